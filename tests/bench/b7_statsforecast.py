"""B7's peer: statsforecast's MSTL(season_length=[24, 168], trend_forecaster=AutoETS(model="ZZN"))
on the series cordon-bench wrote (unique_id, ds, y), 24-hour forecasts with a 99.9% interval, on the
given number of jobs. A small warm-up fit first compiles statsforecast's numba code, so the timed
fit is steady state."""

import sys
import time

import pandas as pd
from statsforecast import StatsForecast
from statsforecast.models import MSTL, AutoETS


def main(path, jobs):
    df = pd.read_csv(path)
    df["y"] = df["y"].astype(float)
    model = lambda: MSTL(season_length=[24, 168], trend_forecaster=AutoETS(model="ZZN"))
    warm = df[df["unique_id"].isin(df["unique_id"].unique()[:4])]
    StatsForecast(models=[model()], freq=1, n_jobs=1).forecast(df=warm, h=24, level=[99.9])
    hosts = df["unique_id"].nunique()
    t = time.perf_counter()
    out = StatsForecast(models=[model()], freq=1, n_jobs=jobs).forecast(df=df, h=24, level=[99.9])
    wall = time.perf_counter() - t
    print(f"  statsforecast MSTL(AutoETS): {hosts} hosts, n_jobs={jobs}: {wall:.2f} s wall; {len(out)} forecast rows")
    print(f"  statsforecast refit wall s: {wall:.3f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
