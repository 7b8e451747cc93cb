"""Statistics of the real LUNA16 annotations, baked in as small tables.

Computed once at development time from ``annotations.csv`` (1,186 nodules over
601 series) and ``annotations_with_malignancy.csv`` (1,182 of them with the
LIDC radiologists' malignancy ratings, the book's file); the generator never
reads those files at run time. The lines below each table say how it was
obtained, so it can be recomputed.
"""

from __future__ import annotations

import numpy as np

# Diameter quantiles (mm) at 0, 5, ..., 100 %: np.percentile(diameter_mm,
# np.linspace(0, 100, 21)) over annotations.csv. Median 6.4 mm, mean 8.3 mm.
DIAMETER_QUANTILES_MM = (
    3.25, 4.09, 4.40, 4.67, 4.90, 5.11, 5.31, 5.63, 5.90, 6.17, 6.43,
    6.87, 7.30, 7.92, 8.72, 9.70, 11.07, 12.86, 15.48, 18.95, 32.27,
)

# Nodules per series among the 601 series that have any: Counter of
# Counter(seriesuid).values() over annotations.csv.
NODULES_PER_SCAN_COUNTS = {1: 310, 2: 159, 3: 63, 4: 24, 5: 23, 6: 11, 7: 4, 8: 2, 9: 4, 12: 1}

# LUNA16 has 888 scans and 601 of them carry an annotation: 287 / 888.
FRACTION_SCANS_WITHOUT_NODULES = 287 / 888

# Candidates per scan in LUNA16's candidates.csv: 551,065 rows over 888
# scans, 1,351 of them class 1 (1.14 per annotated nodule).
CANDIDATES_PER_SCAN = 551_065 / 888
POSITIVE_CANDIDATES_PER_NODULE = 1_351 / 1_186

# Malignancy (mal_bool) against diameter: logistic regression of mal_bool on
# ln(diameter_mm) over annotations_with_malignancy.csv gives
# logit P = -11.41 + 5.157 * ln(d); it reproduces the fraction malignant per
# diameter bin (below) within a few points: 1 % at 3-4 mm, 47 % at 8-10 mm,
# 96 % at 15-20 mm.
MALIGNANCY_LOGIT = (-11.41, 5.157)

# mal_bool in the book's file is exactly "at least two ratings of 4 or 5"
# (agrees on 1,182 of 1,182 rows; the median rule agrees on 1,163).
MALIGNANT_MIN_HIGH_RATINGS = 2
MALIGNANT_RATING = 4

# Fraction with mal_bool True per diameter bin [lo, hi) mm, for checking the
# generator's trend (not used to generate): overall 0.32.
MALIGNANT_FRACTION_BY_DIAMETER = {
    (3, 4): 0.000, (4, 5): 0.027, (5, 6): 0.069, (6, 8): 0.164,
    (8, 10): 0.536, (10, 15): 0.812, (15, 20): 0.948, (20, 40): 0.939,
}

# Share of each rating 1..5 (LIDC malignancy scale) among all ratings of the
# nodules in a diameter bin, from mal_details: small nodules are rated
# "indeterminate" (3) or benign, rarely 4-5.
RATING_SHARES_BY_DIAMETER = {
    (0, 4): (0.296, 0.290, 0.385, 0.030, 0.000),
    (4, 5): (0.183, 0.299, 0.448, 0.067, 0.003),
    (5, 6): (0.177, 0.272, 0.424, 0.111, 0.016),
    (6, 8): (0.126, 0.233, 0.436, 0.172, 0.033),
    (8, 10): (0.115, 0.138, 0.340, 0.292, 0.115),
    (10, 15): (0.055, 0.119, 0.222, 0.304, 0.299),
    (15, 20): (0.037, 0.060, 0.171, 0.201, 0.532),
    (20, 99): (0.006, 0.050, 0.127, 0.171, 0.646),
}

# How many radiologists rated a nodule (len_mal_details) by diameter bin:
# larger nodules were marked by more of the four readers.
RATERS_BY_DIAMETER = {
    (0, 5): {3: 149, 4: 120, 5: 1},
    (5, 8): {3: 182, 4: 324, 5: 1},
    (8, 15): {3: 46, 4: 228, 5: 4, 7: 1},
    (15, 99): {3: 31, 4: 91, 5: 2, 6: 1, 7: 1},
}

# Correlation of two readers' latent opinions of one nodule (ordinal model in
# nodules.py); chosen, not fitted: readers agree more often than not, and
# ratings conditioned on mal_bool then look like the file's.
RATER_CORRELATION = 0.7


def _bin(table: dict, diameter: float):
    """Value of the first bin (lo, hi) with diameter < hi; the last bin beyond."""
    for (_, hi), value in table.items():
        if diameter < hi:
            return value
    return value


def rating_shares(diameter: float) -> np.ndarray:
    return np.asarray(_bin(RATING_SHARES_BY_DIAMETER, diameter), dtype=np.float64)


def sample_diameters(rng: np.random.Generator, n: int) -> np.ndarray:
    """Diameters (mm) drawn from the real distribution (inverse CDF, linear between quantiles)."""
    q = np.linspace(0.0, 1.0, len(DIAMETER_QUANTILES_MM))
    return np.interp(rng.random(n), q, DIAMETER_QUANTILES_MM)


def _draw_from_counts(rng: np.random.Generator, counts: dict[int, int], n: int | None = None):
    values = np.fromiter(counts.keys(), dtype=np.int64)
    p = np.fromiter(counts.values(), dtype=np.float64)
    return rng.choice(values, size=n, p=p / p.sum())


def sample_nodule_count(rng: np.random.Generator, max_count: int) -> int:
    """Nodules in a scan that has at least one, capped at `max_count`."""
    return int(min(_draw_from_counts(rng, NODULES_PER_SCAN_COUNTS), max_count))


def sample_rater_count(rng: np.random.Generator, diameter: float) -> int:
    return int(_draw_from_counts(rng, _bin(RATERS_BY_DIAMETER, diameter)))


def malignant(ratings) -> bool:
    """The book's mal_bool from a nodule's ratings."""
    return int(np.sum(np.asarray(ratings) >= MALIGNANT_RATING)) >= MALIGNANT_MIN_HIGH_RATINGS
