#!/usr/bin/env python3
"""How the per-host scorer's constants were chosen (docs/predictions.md, "One score per host").

An offline copy of engine/src/predict/host.rs in numpy, run over a grid of variants on the six SMD
development machines (../shared/smd). For each machine left out, the variant with the best mean
best point-wise F1 on the other five is scored on it; the mean of those held-out scores is the
figure of the whole selection, grid included. Also prints the offline baselines of Sarfraz et al.
(2024) on the same six machines. Needs numpy; takes about 15 minutes on one core.

    python3 -m venv /tmp/np && /tmp/np/bin/pip install numpy
    /tmp/np/bin/python docs/research/smd_host_scorer_grid.py ../shared/smd
"""
import gzip
import itertools
import math
import sys

import numpy as np

SMD = sys.argv[1] if len(sys.argv) > 1 else '../shared/smd'
MACHINES = open(f'{SMD}/machines.txt').read().split()


def load(machine):
    rows = np.loadtxt(gzip.open(f'{SMD}/data/{machine}.csv.gz'), delimiter=',', skiprows=1)
    labels = np.array(open(f'{SMD}/test_label/{machine}.txt').read().split(), dtype=float)
    return rows[:, 1:], labels


def best_f1(scores, labels):
    order = np.argsort(-scores, kind='stable')
    scores, labels = scores[order], labels[order]
    last = np.r_[scores[1:] != scores[:-1], True]  # one point per distinct threshold
    tp = np.cumsum(labels)[last]
    flagged = np.arange(1, len(labels) + 1)[last]
    p, r = tp / flagged, tp / labels.sum()
    return np.max(np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0))


def deviations(x, long, cap, norm):
    """Stage 1 of host.rs: each field's capped residual in its own long-run deviations, combined."""
    mean, var = x[0].copy(), np.zeros(x.shape[1])
    low, high = x[0].copy(), x[0].copy()
    out = np.zeros(len(x))
    for t in range(1, len(x)):
        rate = max(long, 1 / (t + 1))
        floor = 1e-9 + 1e-2 * np.maximum(high - low, 1e-3 * np.abs(mean))
        r = np.minimum(np.abs(x[t] - mean) / (np.sqrt(var) + floor), cap)
        out[t] = {'rms': lambda: np.sqrt((r * r).mean()), 'max': r.max, 'top3': lambda: np.sort(r)[-3:].mean()}[norm]()
        d = x[t] - mean
        mean, var = mean + rate * d, (1 - rate) * (var + rate * d * d)
        low, high = np.minimum(low, x[t]), np.maximum(high, x[t])
    return out


def likelihood(dev, recent, weight=1e-4, warmup=100):
    """Stage 2 of host.rs: the mean of the last `recent` deviations as a Gaussian tail against the
    history of deviations, which starts after the warm-up."""
    mean = var = 0.0
    out, window = np.zeros(len(dev)), []
    for t, d in enumerate(dev):
        window = (window + [d])[-recent:]
        z = (sum(window) / len(window) - mean) / (math.sqrt(var) + 1e-6)
        if t >= warmup:
            rate = max(weight, 1 / (t - warmup + 1))
            step = d - mean
            mean, var = mean + rate * step, (1 - rate) * (var + rate * step * step)
        tail = 0.0 if z <= 0 else -math.log10(max(0.5 * math.erfc(z / math.sqrt(2)), 1e-300))
        out[t] = 0.0 if t + 1 <= warmup + recent else min(tail / 10, 1.0)
    return out


def main():
    data = {m: load(m) for m in MACHINES}
    tail = {m: slice(len(data[m][0]) - len(data[m][1]), None) for m in MACHINES}

    print('offline baselines (look-ahead), mean best F1 over the six machines:')
    l2 = [best_f1(np.linalg.norm(x, axis=1)[tail[m]], y) for m, (x, y) in data.items()]
    print(f'  L2 norm of the row                      {np.mean(l2):.3f}')
    pca = []
    for m, (x, y) in data.items():
        train, test = x[:len(x) - len(y)], x[tail[m]]
        mu = train.mean(0)
        v = np.linalg.svd(train - mu, full_matrices=False)[2][:10].T
        err = np.abs((test - mu) - (test - mu) @ v @ v.T)
        sd = err.std(0)
        err = (err - err.mean(0)) / np.where(sd == 0, 1, sd)  # whole-test statistics
        c = np.cumsum(np.vstack([np.zeros(err.shape[1]), err]), 0)
        smooth = np.zeros_like(err)
        for i in range(5, len(err)):  # the centred window of QuoVadisTAD's normalise_scores
            j = min(i + 4, len(err))
            smooth[i] = (c[j] - c[i - 5]) / (j - i + 5)
        pca.append(best_f1(smooth.max(1), y))
    print(f'  PCA (10) reconstruction error           {np.mean(pca):.3f}')

    grid = [(1 / 1440, 10.0, n, r) for n in ('rms', 'max', 'top3') for r in (1, 3, 10)]
    grid += [(1 / 10080, 10.0, n, r) for n in ('rms', 'max', 'top3') for r in (1, 3, 10)]
    grid += [(1 / 10080, c, n, r) for c in (5.0, 30.0) for n in ('max', 'top3') for r in (3, 10, 30)]
    grid += [(1 / 10080, 10.0, 'max', 30)]
    results, cache = {}, {}
    for long, cap, norm, recent in grid:
        f1 = []
        for m, (x, y) in data.items():
            key = (m, long, cap, norm)
            if key not in cache:
                cache[key] = deviations(x, long, cap, norm)
            f1.append(best_f1(likelihood(cache[key], recent)[tail[m]], y))
        results[(long, cap, norm, recent)] = f1
        print(f'  1/{1 / long:.0f} cap {cap:g} {norm:4s} recent {recent:2d}: {np.mean(f1):.3f}', flush=True)

    held = []
    for i, m in enumerate(MACHINES):
        chosen = max(results, key=lambda k: np.mean([f for j, f in enumerate(results[k]) if j != i]))
        held.append(results[chosen][i])
        print(f'{m} left out: chose {chosen}, scores {held[-1]:.3f}')
    print(f'leave one machine out, selection included: {np.mean(held):.3f} ({len(grid)} variants)')


if __name__ == '__main__':
    main()
