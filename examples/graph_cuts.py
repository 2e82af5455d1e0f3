"""Signed cuts of real graphs, straight from their sparse adjacency matrices.

Three small social networks that ship with networkx (``pip install networkx``): Zachary's
karate club (34 members, 78 friendships, and the two factions it split into), the
co-appearances of the characters of Les Miserables (77, weighted) and the Davis Southern
Women (18 women x 14 events, a rectangular membership matrix). Each is decomposed as a
scipy.sparse matrix (never densified) at a few storage budgets counted against its own
sparse bytes (``ratio=``), and the table gives the cuts, the bytes and the relative error.
For the karate club it also reads the factions off the first cuts: k-means (k = 2) on the
members' signs in the first 8 cuts, weighted by |coefficient|, scored by the adjusted Rand
index against the recorded split (1: the split exactly; 0: chance).

    python examples/graph_cuts.py [--ratios 0.25 0.5 1] [--seed 0]
"""
import argparse

import networkx as nx
import numpy as np
from scipy.cluster.vq import kmeans2

import signcut
from signcut._result import unpack_signs


def graphs():
    karate = nx.karate_club_graph()
    women = nx.davis_southern_women_graph()
    top = [v for v in women if women.nodes[v]["bipartite"] == 0]
    bottom = [v for v in women if women.nodes[v]["bipartite"] == 1]
    return {
        "karate club": nx.to_scipy_sparse_array(karate, format="csr"),
        "les miserables": nx.to_scipy_sparse_array(nx.les_miserables_graph(), format="csr"),
        "southern women x events": nx.bipartite.biadjacency_matrix(women, top, bottom),
    }, np.array([karate.nodes[v]["club"] == "Officer" for v in karate])


def adjusted_rand(a, b):
    """Adjusted Rand index of two labelings."""
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)

    def pairs(x):
        return float((x * (x - 1) / 2).sum())

    both, rows, cols = pairs(table), pairs(table.sum(axis=1)), pairs(table.sum(axis=0))
    expected = rows * cols / pairs(np.array([len(a)], float))
    return (both - expected) / ((rows + cols) / 2 - expected)


def factions(A, seed, cuts=8):
    """Labels 0/1 from k-means on the members' weighted signs in the first cuts."""
    r = signcut.decompose(A, width=cuts, seed=seed)
    weights = np.abs(r.coef)[:, None]
    X = np.vstack([unpack_signs(r.signs[0], A.shape[0]) * weights,
                   unpack_signs(r.signs[1], A.shape[1]) * weights]).T.astype(np.float64)
    best = None
    for start in range(5):
        centers, labels = kmeans2(X, 2, minit="++", seed=start)
        inertia = float(((X - centers[labels]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, labels)
    return best[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5, 1.0],
                    help="storage budgets, over each matrix's own sparse bytes")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    table, club = graphs()
    print("| graph | shape | stored entries | sparse bytes | ratio | cuts | bytes | error |")
    print("|---|---|---|---|---|---|---|---|")
    for name, A in table.items():
        for ratio in args.ratios:
            r = signcut.decompose(A, ratio=ratio, seed=args.seed)
            print(f"| {name} | {A.shape[0]} x {A.shape[1]} | {A.nnz} | {r.input_nbytes} | "
                  f"{ratio:g} | {r.width} | {r.nbytes} | {100 * r.rel_error:.1f}% |")
    labels = factions(table["karate club"], args.seed)
    print(f"\nkarate club factions from the first 8 cuts: adjusted Rand index "
          f"{adjusted_rand(labels, club.astype(int)):.2f}")


if __name__ == "__main__":
    main()
