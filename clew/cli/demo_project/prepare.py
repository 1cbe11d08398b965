"""Data preparation: raw tumour measurements -> cleaned train and test splits.

Run by ``clew demo`` inside a throwaway git repository; clew records the commit, this
script's permalink, the environment, the data source read and the datasets written. The raw
measurements are small, so the script snapshots them into the store (a CSV logged as the data
source, naming where it came from): ``clew trace`` can then re-hash every step of the thread.
"""

from pathlib import Path

from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

import clew

SOURCE = {
    "source_uri": "sklearn://datasets/breast_cancer",
    "origin": "UCI ML Breast Cancer Wisconsin (Diagnostic), as shipped with scikit-learn",
}
OUT = Path("data")

with clew.start_run(experiment="tumor-screening", name="prepare", kind="processing") as run:
    frame = load_breast_cancer(as_frame=True).frame
    OUT.mkdir(exist_ok=True)
    frame.to_csv(OUT / "wdbc.csv", index=False)
    run.log_input(OUT / "wdbc.csv", name="wdbc-measurements", type="data_source", properties=SOURCE)
    frame.columns = [column.replace(" ", "_") for column in frame.columns]
    frame = frame.dropna().drop_duplicates()
    train, test = train_test_split(frame, test_size=0.25, random_state=7, stratify=frame["target"])
    run.log_params({"test_size": 0.25, "split_seed": 7})
    run.log_metrics({"rows_train": len(train), "rows_test": len(test)})

    train.to_parquet(OUT / "train.parquet", index=False)
    test.to_parquet(OUT / "test.parquet", index=False)
    run.log_output(OUT / "train.parquet", name="tumor-train", type="dataset")
    run.log_output(OUT / "test.parquet", name="tumor-test", type="dataset")
