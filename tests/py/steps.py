"""Runs the named async steps of a client script, each within a time limit, and reports
`OK name` / `FAIL name: why` lines that the Rust test reads; returns the failure count."""

import asyncio


async def run_steps(steps, step_timeout, label):
    failed = 0
    for name, step in steps:
        try:
            await asyncio.wait_for(step(), step_timeout)
            print(f"OK {name}", flush=True)
        except asyncio.TimeoutError:
            print(f"FAIL {name}: step took over {step_timeout} s", flush=True)
            failed += 1
        except Exception as e:  # noqa: BLE001 -- any error fails the step, with its name
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            failed += 1
    print(f"{label}: {len(steps) - failed} of {len(steps)} steps OK", flush=True)
    return failed
