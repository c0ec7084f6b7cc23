"""Capture golden event logs from real runs of the examples (``python tests/data/capture_golden.py``).

Each example runs in-process against a private embedded nats-server; every record of its
log is dumped as one JSON line ``{"stream_seq", "subject", "envelope"}`` (the envelope as
msgspec builtins) into ``tests/data/golden/<name>.jsonl``, and the values the replay test
asserts go into ``<name>.expected.json``. Re-capture only on purpose: the point of golden
logs is that *old* logs keep decoding and folding the same way.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

import msgspec

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from actors.failure_manager import RetrySettings  # noqa: E402
from events.log import EventLog  # noqa: E402
from streamflow.bus import EmbeddedServer, connect  # noqa: E402
from streamflow.cli.engine import RunOptions, prepare, submit_and_run  # noqa: E402
from tests.data.golden_fold import expected_values, fold  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "golden"
EXAMPLES = {
    "wordcount": ("examples/wordcount/wordcount.cwl", "examples/wordcount/job.yml"),
    "pipeline": ("examples/pipeline/pipeline.cwl", "examples/pipeline/job.yml"),
}


async def capture(server: EmbeddedServer, name: str, workflow: str, job: str, work: Path) -> None:
    """Run one example and dump its log and expected fold."""
    prepared = prepare(str(REPO / workflow), str(REPO / job))
    options = RunOptions(workflow=str(REPO / workflow), job=str(REPO / job), bus=server.options(),
                         workdir=str(work / "work"), outdir=str(work / name), run_id=f"golden-{name}",
                         retry=RetrySettings())
    result = await submit_and_run(options, prepared)
    assert result.status == "COMPLETED", result.error
    nc = await connect(server.options())
    try:
        log = EventLog(nc)
        lines = []
        async for record in log.read(result.run_id):
            lines.append({"stream_seq": record.stream_seq, "subject": record.subject,
                          "envelope": msgspec.to_builtins(record.envelope)})
    finally:
        await nc.close()
    (GOLDEN / f"{name}.jsonl").write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in lines))
    state = fold(GOLDEN / f"{name}.jsonl", REPO / workflow)
    expected = {"workflow": workflow, **expected_values(state)}
    (GOLDEN / f"{name}.expected.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
    print(f"{name}: {len(lines)} events")


async def main() -> None:
    """Capture every example."""
    GOLDEN.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with EmbeddedServer(work / "nats") as server:
            for name, (workflow, job) in EXAMPLES.items():
                await capture(server, name, workflow, job, work)


if __name__ == "__main__":
    asyncio.run(main())
