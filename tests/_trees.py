"""Rooted trees for exact order-condition tests (Butcher's B-series)."""


def rooted_trees(max_order):
    """Rooted trees grouped by order, as canonical nested sorted tuples.

    Returns ``(by_order, size)``: ``by_order[k]`` lists the trees with ``k``
    nodes, ``size[tree]`` is a tree's number of nodes.
    """
    by_order = {1: [()]}
    size = {(): 1}
    for n in range(2, max_order + 1):
        smaller = sorted(t for k in range(1, n) for t in by_order[k])
        found = []

        def extend(start, remaining, children):
            if remaining == 0:
                found.append(tuple(children))
                return
            for idx in range(start, len(smaller)):
                tree = smaller[idx]
                if size[tree] <= remaining:
                    extend(idx, remaining - size[tree], children + [tree])

        extend(0, n - 1, [])
        by_order[n] = found
        for tree in found:
            size[tree] = n
    return by_order, size


def density(tree, size):
    """The tree's density gamma(t): its order times its subtrees' densities."""
    out = size[tree]
    for child in tree:
        out *= density(child, size)
    return out
