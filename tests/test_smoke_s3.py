"""The S3 fixture itself: a reference-only dataset on a real S3 server keeps its size and ETag."""

from __future__ import annotations

import boto3

import clew


def test_reference_dataset_on_s3_records_size_and_etag(client, s3_server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server["AWS_SECRET_ACCESS_KEY"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server["endpoint"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = boto3.client("s3", endpoint_url=s3_server["endpoint"])
    s3.put_object(Bucket=s3_server["bucket"], Key="raw/big.csv", Body=b"a,b\n1,2\n")
    uri = f"s3://{s3_server['bucket']}/raw/big.csv"
    with clew.start_run(experiment="s3") as run:
        artifact = run.log_input(uri, name="big")
    assert artifact.uri == uri
    assert artifact.size == 8
    assert artifact.properties["reference"] is True
    assert artifact.properties["etag"]
