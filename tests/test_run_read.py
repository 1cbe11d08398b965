"""Reading one run by id (``RunService.get_run``, the server's most frequent read) has its own
two-statement path; it must give exactly the record the batch read (``read_runs``) gives."""

from __future__ import annotations

import math

import clew
from clew.service.runs import RunService, find_run, read_runs
from clew.store.location import Store


def test_one_run_read_gives_what_the_batch_read_gives(client: clew.Client, store: Store) -> None:
    with client.start_run(experiment="reads", name="one", capture_code=False) as run:
        run.log_params({"lr": 0.1, "depth": 6, "note": "a 'quoted' value"})
        run.set_tags({"team": "risk", "stage": "dev"})
        run.log_metric("loss", 0.25)
        run.log_metric("loss", 0.125, step=1)
        run.log_metric("gap", math.nan)
        run.log_metric("peak", math.inf)
    with store.db.read() as connection:
        (batch,) = read_runs(connection, [run.id])
        single = find_run(connection, run.id)
        assert find_run(connection, "01M99D3ZC8D0BC7JW78RB93DNK") is None
    served = RunService(store).get_run(run.id)
    assert single is not None
    for record in (single, batch, served):  # NaN is unequal to itself: compared apart
        assert math.isnan(record.metrics.pop("gap"))
    assert single == batch == served
    assert single.params == {"lr": "0.1", "depth": "6", "note": "a 'quoted' value"}
    assert single.metrics == {"loss": 0.125, "peak": math.inf}
