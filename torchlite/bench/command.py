"""`torchlite bench`: time every operator against its references, print ratios."""

from __future__ import annotations

import argparse
import logging
import os

from torchlite.utils.atomic import atomic_write

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="fewer timing rounds (same workload sizes)")
    p.add_argument("--json", metavar="FILE", help="also write all results as JSON to FILE")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--only", metavar="TEXT", help="run only groups whose name contains TEXT")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own choice)")
    p.add_argument("--strict", action="store_true", help="exit 1 if a speed-up target is missed")


def run(args: argparse.Namespace) -> int:
    import torch

    import torchlite.ops  # noqa: F401  (loads the operators)
    from torchlite.bench import registry, runner

    if args.threads:
        torch.set_num_threads(args.threads)
    info = runner.machine_info(args.device)
    log.info(
        "machine: %s, %s cpus, torch %s with %d threads, load average %s",
        info["processor"], info["cpu_count"], info["torch"], info["torch_threads"],
        " ".join(f"{x:.2f}" for x in info["loadavg_start"]),
    )
    if info["loadavg_start"][0] > 0.5 * (os.cpu_count() or 1):
        log.warning("the machine is busy (load %.2f): expect noisy times; ratios hold better", info["loadavg_start"][0])
    results, targets, limits = runner.run(registry.all_cases(), quick=args.quick, device=args.device,
                                          only=args.only)
    print(runner.format_table(results, targets, limits))
    missed = [t for t in targets if not t.met] + [lim for lim in limits if not lim.met]
    goals = len(targets) + len(limits)
    print(f"\n{goals - len(missed)} of {goals} goals met ({len(targets)} speed-up targets, {len(limits)} limits)"
          f" (load average now {os.getloadavg()[0]:.2f})")
    if args.json:
        with atomic_write(args.json, "w") as f:
            f.write(runner.to_json(info, results, targets, limits))
        log.info("wrote %s", args.json)
    return 1 if (args.strict and missed) else 0
