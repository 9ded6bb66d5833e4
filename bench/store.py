"""Store benchmark: 100,000 rankings of 4 completions through the labelers' submit path, conversion to pairs,
Parquet export. Targets on a 2-core CPU: >= 1,000 submits/s, >= 200,000 pairs/s, 600,000-pair export < 10 s.

    .venv/bin/python bench/store.py [--rankings 100000]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from pathlib import Path

from results import record_result  # bench/results.py: the line, kept in bench/results/
from sqlalchemy import insert
from sqlmodel import Session
from tqdm import tqdm

from labeler.io.export import export_preferences
from labeler.labels.dataset import load_prompts, load_set_rankings, records_from_sets
from labeler.labels.pairs import PairSettings
from labeler.store.db import make_engine
from labeler.store.store import RankingIn, submit_ranking
from labeler.store.tables import Assignment, Completion, CompletionSet, Prompt, id_of, utcnow
from labeler.store.users import add_user


def seed_store(session: Session, count: int, user_id: int) -> list[tuple[int, list[int]]]:
    """Bulk-create `count` sets of 4 completions, each assigned to the user (setup, not timed as submits)."""
    now = utcnow()
    session.execute(
        insert(Prompt),
        [
            {
                "messages": [{"role": "user", "content": f"prompt {i}"}],
                "content_hash": f"h{i}",
                "source": "bench",
                "split": "train",
                "created_at": now,
            }
            for i in range(count)
        ],
    )
    session.execute(
        insert(CompletionSet),
        [
            {
                "prompt_id": i + 1,
                "origin": "generated",
                "source": "",
                "sampling": {},
                "labels_needed": 1,
                "created_at": now,
            }
            for i in range(count)
        ],
    )
    session.execute(
        insert(Completion),
        [
            {
                "set_id": s + 1,
                "position": j,
                "text": f"answer {s}.{j} " * 8,
                "token_count": 16,
                "finish_reason": "eos",
            }
            for s in range(count)
            for j in range(4)
        ],
    )
    sets = [(s + 1, [4 * s + j + 1 for j in range(4)]) for s in range(count)]
    later = now.replace(year=now.year + 1)
    session.execute(
        insert(Assignment),
        [
            {
                "set_id": s,
                "user_id": user_id,
                "display_order": ids,
                "leased_at": now,
                "lease_expires_at": later,
            }
            for s, ids in sets
        ],
    )
    session.commit()
    return sets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rankings", type=int, default=100_000)
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        with Session(engine) as session:
            user = add_user(session=session, name="bench", password="bench-password")
            start = time.perf_counter()
            user_id = id_of(user)
            sets = seed_store(session, args.rankings, user_id)
            print(f"setup: {args.rankings} sets of 4 in {time.perf_counter() - start:.1f}s")

            start = time.perf_counter()
            for set_id, ids in tqdm(sets, desc="submit", mininterval=2):
                ranks = dict(zip(ids, rng.sample(range(1, 5), 4), strict=True))
                submit_ranking(
                    session=session,
                    ranking=RankingIn(
                        set_id=set_id, user_id=user_id, submission_id=uuid.uuid4().hex, ranks=ranks
                    ),
                )
            submit_s = time.perf_counter() - start
            print(f"submits: {len(sets) / submit_s:,.0f}/s ({submit_s:.1f}s)")

            start = time.perf_counter()
            loaded = load_set_rankings(session=session)
            prompts = load_prompts(session=session, prompt_ids={s.prompt_id for s in loaded})
            load_s = time.perf_counter() - start
            start = time.perf_counter()
            records = records_from_sets(loaded, prompts, PairSettings())
            convert_s = time.perf_counter() - start
            print(
                f"pairs: {len(records):,} converted at {len(records) / convert_s:,.0f}/s (store read {load_s:.1f}s)"
            )

            start = time.perf_counter()
            result = export_preferences(session=session, out=Path(tmp) / "export", fmt="parquet")
            export_s = time.perf_counter() - start
            print(f"export: {result.pairs:,} pairs to Parquet in {export_s:.1f}s (includes the store read)")
    record_result(
        f"RESULT submits_per_s={len(sets) / submit_s:.0f} pairs_per_s={len(records) / convert_s:.0f} "
        f"store_read_s={load_s:.2f} export_pairs={result.pairs} export_s={export_s:.2f}"
    )


if __name__ == "__main__":
    main()
