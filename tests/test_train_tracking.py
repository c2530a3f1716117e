"""TensorBoard, MLflow and Weights & Biases (offline) receive the same metrics as
out/metrics.jsonl when the spec turns them on: a short real run on 2 CPU processes."""

from __future__ import annotations

import pytest
from train_harness import launch, project, read_metrics, workspace

pytestmark = pytest.mark.slow


def test_every_tracker_records_the_run(monkeypatch):
    proj = project("trackers")
    out = workspace() / "trackers-out"
    launch(proj, "--data", str(workspace() / "data"), "--out", str(out), "--max-steps", "4")
    metrics = read_metrics(out)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert "val_loss" in metrics[-1]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    losses = [(e.step, e.value) for e in events.Scalars("loss")]
    assert losses == [(m["step"], pytest.approx(m["loss"], rel=1e-6)) for m in metrics]

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # as train.py sets it
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(out / "mlruns").as_uri())
    (experiment,) = [e for e in client.search_experiments() if e.name == "llmspec"]
    (run,) = client.search_runs([experiment.experiment_id])
    history = client.get_metric_history(run.info.run_id, "loss")
    assert sorted((h.step, h.value) for h in history) == [
        (m["step"], pytest.approx(m["loss"])) for m in metrics
    ]
    assert run.data.metrics["val_perplexity"] == pytest.approx(metrics[-1]["val_perplexity"])

    offline_runs = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(offline_runs) == 1 and offline_runs[0].stat().st_size > 0
