"""Training: a scikit-learn pipeline on the prepared data, evaluated on the held-out split.

Run by ``clew demo`` after ``prepare.py``; the datasets it reads are the very files that
run produced (same digests), so lineage links the model back to the raw data source.
"""

import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import clew

PARAMS = {"C": 0.5, "max_iter": 500}

clew.seed(42)
with clew.start_run(experiment="tumor-screening", name="train", kind="training") as run:
    train_set = run.log_input("data/train.parquet", name="tumor-train")
    test_set = run.log_input("data/test.parquet", name="tumor-test")
    train = pd.read_parquet("data/train.parquet")
    test = pd.read_parquet("data/test.parquet")
    run.log_params({"model": "logistic_regression", "scaler": "standard", **PARAMS})

    features, target = train.drop(columns="target"), train["target"]
    model = make_pipeline(StandardScaler(), LogisticRegression(**PARAMS)).fit(features, target)
    scores = model.predict_proba(test.drop(columns="target"))[:, 1]
    run.log_metrics(
        {
            "auc": float(roc_auc_score(test["target"], scores)),
            "accuracy": float(accuracy_score(test["target"], scores > 0.5)),
        }
    )
    model_artifact = run.log_model(model, name="tumor-classifier")
