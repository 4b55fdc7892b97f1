"""`pawstream smoke --local` (`make smoke`): start the local stack, smoke-test it, stop it.

The stack is the one `pawstream up` runs (same planner, supervisor and clean stop), started in
this process so the smoke test gets its real addresses: a configured port that was taken moves
to a free one, and the planner knows where. The metrics checked are the API's, each worker's and
the monitor's.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from pawstream.settings import Settings
from stack.smoke import SmokeOptions, run_smoke
from stack.up import START_ERRORS, check_artifact, endpoints_table, running_stack, sigterm_as_interrupt


def run_smoke_local(
    settings: Settings, *, photo: Path | None, expect_label: str | None, timeout_s: float, as_json: bool
) -> int:
    console = Console(stderr=True)
    settings, problem = check_artifact(settings)
    if problem:
        console.print(f"[red]cannot start:[/] {problem} (`make demo` trains one if it is missing)")
        return 2
    key = settings.api.api_key
    code = 130  # interrupted, unless the block below returns
    try:
        with sigterm_as_interrupt(), running_stack(settings, console, log_name="smoke.log") as run:
            run.start()
            console.print(endpoints_table(run.stack, title="smoke-testing"))
            options = SmokeOptions(
                api=run.stack.api_url,
                metrics=[f"{run.stack.api_url}/metrics", *run.stack.metrics_urls.values()],
                photo=photo,
                expect_label=expect_label,
                timeout_s=timeout_s,
                api_key=key.get_secret_value() if key else None,
            )
            code = run_smoke(options, as_json=as_json)
    except START_ERRORS as exc:
        console.print(f"[red]could not start the stack:[/] {exc}")
        return 1
    return code
