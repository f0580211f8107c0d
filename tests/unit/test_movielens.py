from __future__ import annotations

from pathlib import Path

import pytest

from recsys.exceptions import DataNotFound
from recsys.movielens import MovieLens, Rating, temporal_split


def test_split_holds_out_last_fifth_of_positives_without_leakage() -> None:
    ratings = [Rating("u", f"i{k}", 5.0 if k % 2 == 0 else 2.0, 100 + k) for k in range(20)]
    split = temporal_split(ratings)
    # 10 positives → 2 held out: the last two positives by time
    assert split.test["u"] == ["i16", "i18"]
    assert all(r.ts < 116 for r in split.train)
    assert split.train_positives["u"] == ["i0", "i2", "i4", "i6", "i8", "i10", "i12", "i14"]


def test_users_with_one_positive_stay_in_training() -> None:
    split = temporal_split([Rating("u", "a", 5.0, 1), Rating("u", "b", 1.0, 2)])
    assert split.test == {} and len(split.train) == 2


def test_missing_folder_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataNotFound, match="STREAMREC_MOVIELENS_PATH"):
        MovieLens(tmp_path)


@pytest.mark.movielens
def test_loader_on_ml_latest_small(movielens_path: Path) -> None:
    ml = MovieLens(movielens_path)
    catalog = ml.catalog()
    assert len(catalog) == 9742
    toy = next(c for c in catalog if c.item_id == "1")
    assert toy.title.startswith("Toy Story") and "Animation" in toy.categories
    assert toy.attributes["year"] == "1995"
    ratings = ml.ratings()
    assert len(ratings) == 100836
    assert ratings == sorted(ratings, key=lambda r: (r.ts, r.user_id, r.item_id))
    first = next(ml.events(ratings[:1]))
    assert first.rating == ratings[0].rating and first.item_id == ratings[0].item_id
    split = temporal_split(ratings)
    assert len(split.test) > 550
