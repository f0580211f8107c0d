"""Policy learning against known truth, over many seeds (offline, no Kafka).

For each seed: a simulated world (testkit.policy_world: users with hidden preferences,
effects jittered per seed), ``--requests`` logged requests under the settings' policy
exploring with ``--epsilon`` — drawn by the same decision code serving runs, with its
exact propensities — then the ``learn-policy`` procedure (recsys.policy.learn: choose
per cell on a selection part, judge on a holdout, bootstrap intervals, safe deployment).
The world's truth gives the exact value of the logging policy and of the learned one
(as deployed: the learned rules with ``--new-epsilon``; when the procedure keeps the
current policy, the learned value is the current one's), and says whether the holdout's
95 % SNIPS interval of the learned policy covers its true value.

The path through the real serve and feedback workers is shown by
``tests/integration/test_policy_loop.py``; this script varies the seed.

    python -m benchmarks policy_sim [--seeds 20] [--requests 12000] [--epsilon 0.3]

Last line: ``{"true_value": {"logging": x, "learned": y}, "ci_coverage": c, "seeds": n}``
(means over seeds; ci_coverage = share of seeds whose interval covers the truth).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass

from recsys.policy.learn import LearnConfig, learn
from recsys.policy.model import BUCKETS
from recsys.serving.default_policy import default_policy
from testkit.policy_world import PolicyWorld, design_config


@dataclass(frozen=True)
class SeedResult:
    seed: int
    logging: float  # true value of the logging policy
    learned: float  # true value of what learn-policy leaves serving (deployed or kept)
    learned_rules: float  # true value of the learned policy, deployed or not
    oracle: float  # the world's best rules with the new exploration rate
    deployed: bool
    snips: float | None  # holdout SNIPS of the learned policy
    ci: tuple[float, float] | None  # its 95 % interval
    covered: bool  # the interval covers learned_rules
    logging_covered: bool  # the current policy's interval covers its true value
    changed: int  # cells whose rule changed


def one_seed(seed: int, args: argparse.Namespace) -> SeedResult:
    world = PolicyWorld(
        seed=seed,
        users_per_bucket=args.users_per_bucket,
        new_users=args.users_per_bucket // 2,
        jitter=args.jitter,
    )
    logging_policy = default_policy(design_config(args.epsilon))
    new_eps = {b: args.new_epsilon for b in BUCKETS}
    log = world.simulate(logging_policy, args.requests, seed=10_000 + seed)
    result = learn(
        log,
        logging_policy,
        cfg=LearnConfig(seed=seed, epsilon=new_eps, resamples=args.bootstrap),
    )
    learned = result.estimates["learned"]["overall"]
    current = result.estimates["current"]["overall"].ci["snips"]
    truth_rules = world.true_value(result.learned)
    truth_logging = world.true_value(logging_policy)
    ci = learned.ci["snips"]
    return SeedResult(
        seed=seed,
        logging=truth_logging,
        learned=truth_rules if result.deploy else truth_logging,
        learned_rules=truth_rules,
        oracle=world.true_value(world.oracle(logging_policy).with_epsilon(new_eps)),
        deployed=result.deploy,
        snips=learned.snips,
        ci=ci,
        covered=ci is not None and ci[0] <= truth_rules <= ci[1],
        logging_covered=current is not None and current[0] <= truth_logging <= current[1],
        changed=len(result.as_json()["changed_cells"]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--requests", type=int, default=12000)
    parser.add_argument("--epsilon", type=float, default=0.3, help="logging exploration")
    parser.add_argument("--new-epsilon", type=float, default=0.05)
    parser.add_argument("--users-per-bucket", type=int, default=20)
    parser.add_argument("--jitter", type=float, default=0.3)
    parser.add_argument("--bootstrap", type=int, default=500)
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    rows: list[SeedResult] = []
    started = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        r = one_seed(seed, args)
        rows.append(r)
        ci = "-" if r.ci is None else f"[{r.ci[0]:.4f}, {r.ci[1]:.4f}]"
        snips = "-" if r.snips is None else f"{r.snips:.4f}"
        print(
            f"seed {seed:3d}: logging {r.logging:.4f} learned {r.learned:.4f} (oracle "
            f"{r.oracle:.4f}) deployed={r.deployed} cells changed {r.changed}; SNIPS {snips} "
            f"95% CI {ci} covers {r.learned_rules:.4f}: {r.covered}",
            flush=True,
        )
    n = len(rows)

    def mean(values: list[float]) -> float:
        return round(statistics.fmean(values), 4)

    details = {
        "requests_per_seed": args.requests,
        "logging_epsilon": args.epsilon,
        "new_epsilon": args.new_epsilon,
        "oracle": mean([r.oracle for r in rows]),
        "learned_rules": mean([r.learned_rules for r in rows]),
        "deployed_share": round(sum(r.deployed for r in rows) / n, 3),
        "learned_beats_logging_share": round(sum(r.learned > r.logging for r in rows) / n, 3),
        "logging_ci_coverage": round(sum(r.logging_covered for r in rows) / n, 3),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(details, sort_keys=True), flush=True)
    # the keys, in its order (emit() would sort them)
    last = {
        "true_value": {
            "logging": mean([r.logging for r in rows]),
            "learned": mean([r.learned for r in rows]),
        },
        "ci_coverage": round(sum(r.covered for r in rows) / n, 3),
        "seeds": n,
    }
    print(json.dumps(last), flush=True)


if __name__ == "__main__":
    main()
