"""Leakage against the records per deletion request k and against SISA's shard count S (issue
11, (c)): per-record median cosine of HRec (matched to the deleted records by the best
assignment) for k = 1, 2, 3, 5, 10; HRec on the changed shard and the ensemble's test accuracy
for S = 2, 5, 10, 20.

Command:   python experiments/multi_record.py [--smoke]
Runtime:   about 3 minutes on a 2-core CPU (digits softmax, 1,000 train, 617 public).
Headline:  see RESULTS.md "Multi-record deletions and SISA".
"""

import dataclasses
import json
import os
import sys

import jax

import jaxrecon as jr


@dataclasses.dataclass(frozen=True)
class Config:
    requests: int = 40
    ks: tuple[int, ...] = (1, 2, 3, 5, 10)
    shards: tuple[int, ...] = (2, 5, 10, 20)
    n_train: int = 1000


def get_config(smoke: bool = False) -> Config:
    return Config(requests=3, ks=(1, 2), shards=(), n_train=150) if smoke else Config()


def run(config: Config) -> dict[str, dict]:
    key = jax.random.key(0)
    sc = jr.make_scenario(jr.load_digits(), model="softmax", n_train=config.n_train, key=key)
    theta = jax.jit(jr.fit)(sc).params
    by_k = {}
    for k in config.ks:
        deleted = jr.draw_deletions(sc, config.requests, per_request=k)  # [B] or [B, k]
        after = jr.make_unlearn(sc, theta, records=k)(deleted)
        recon = jr.make_attack(sc, theta, records=k)(after.params, deleted)
        if k > 1:  # score each record against the reconstruction matched to it
            recon, deleted, _ = jr.match_records(sc, recon, deleted)
        summary = jr.summarize(jr.score(sc, recon, deleted))
        by_k[k] = {a: (s["cosine_median"], s["label_accuracy"]) for a, s in summary.items()}
    by_shards = {}
    deleted = jr.draw_deletions(sc, config.requests)
    for shards in config.shards:
        unlearner = jr.make_unlearn(sc, theta, "sisa", shards=shards)
        recon = jr.make_attack(sc, unlearner.released)(unlearner(deleted).params, deleted)
        summary = jr.summarize(jr.score(sc, recon, deleted))
        by_shards[shards] = {a: s["cosine_median"] for a, s in summary.items()} | {
            "test_accuracy": jr.utility(sc, unlearner.served).test_score
        }
    return {"records_per_request": by_k, "sisa_shards": by_shards}


def main() -> None:
    jax.config.update("jax_enable_x64", True)
    results = run(get_config(smoke="--smoke" in sys.argv))
    os.makedirs("results", exist_ok=True)
    with open("results/multi_record.json", "w") as f:
        json.dump(results, f, indent=2, default=float)
    print(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
