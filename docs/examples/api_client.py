"""Label with rankloop's REST API from a script, with plain httpx: lease a set, rank its answers, submit, until
nothing waits. Here the ranking is "shorter is better"; put your own labelling front end or judge in `rank`.

    RANKLOOP_TOKEN=rlk_... python docs/examples/api_client.py --url http://127.0.0.1:7860 [--sets 20]
"""

from __future__ import annotations

import argparse
import os

import httpx


def rank(answers: list[dict]) -> list[int]:
    """1 = best, by display position; equal numbers are ties."""
    lengths = sorted({len(a["text"]) for a in answers})
    return [lengths.index(len(a["text"])) + 1 for a in answers]


def label(url: str, token: str, sets: int) -> int:
    done = 0
    with httpx.Client(
        base_url=f"{url.rstrip('/')}/api/v1", headers={"Authorization": f"Bearer {token}"}
    ) as api:
        while done < sets:
            leased = api.post("/lease").raise_for_status().json()["set"]
            if leased is None:
                break  # nothing waits for this labeler now
            ranks = rank(leased["answers"])
            answer = api.post("/submit", json={"token": leased["token"], "ranks": ranks})
            if answer.status_code != 200:  # 422: the rules refused the choices; 409: the lease is gone
                raise SystemExit(f"not submitted: {answer.json()['detail']}")
            done += 1
    return done


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:7860")
    parser.add_argument("--sets", type=int, default=20)
    args = parser.parse_args()
    print(f"labelled {label(args.url, os.environ['RANKLOOP_TOKEN'], args.sets)} sets")
