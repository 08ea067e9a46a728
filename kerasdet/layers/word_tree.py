"""The WordTree of YOLO9000: a label hierarchy with one softmax per sibling group."""

import collections.abc
import numbers

import numpy as np


class WordTree:
    """A label hierarchy given by node names and parent indices (YOLO9000's WordTree).

    Node ``i`` is called ``names[i]`` and its parent is ``parents[i]`` (``-1`` for a root).
    The nodes may come in any order: a parent may be listed after its children, and
    siblings need not be next to each other. The children of one parent form a
    *sibling group*, and all the roots together form one more group; the hierarchical
    softmax normalises each group separately. Groups are numbered as follows: group 0
    holds the roots, and the other groups follow in increasing order of their parent's
    index. Trees made by `from_hierarchy` and by the readers in
    `kerasdet.data.word_tree_sources` are in breadth-first order, so each sibling group
    occupies consecutive indices, as in darknet's ``.tree`` files.

    A `WordTree` is a plain, immutable data object (not a layer). `get_config` returns
    ``{"names": [...], "parents": [...]}``, which `HierarchicalSoftmax` and
    `HierarchicalSoftmaxLoss` store in their own configs.

    Reference: Redmon & Farhadi, "YOLO9000: Better, Faster, Stronger", CVPR 2017, §4.

    Args:
        names: sequence of unique, non-empty strings, one per node.
        parents: sequence of ints of the same length, each ``-1`` or the index of
            another node. The parent links must not form a cycle.

    Example:

    ```python
    tree = WordTree(
        names=["animal", "dog", "cat", "terrier", "hound"],
        parents=[-1, 0, 0, 1, 1],
    )
    tree.path(3)            # (3, 1, 0): terrier, dog, animal
    tree.group_ids          # array([0, 1, 1, 2, 2])
    ```
    """

    def __init__(self, names, parents):
        self._names = _validate_names(names)
        self._parents = _validate_parents(parents, self._names)
        self._depths = _depths_or_raise(self._parents, self._names)
        self._build_groups()
        self._ancestor_table = None
        self._levels = None

    # -- construction ---------------------------------------------------------------

    @classmethod
    def from_hierarchy(cls, hierarchy):
        """Builds a tree from a nested mapping of names.

        Each key of a mapping is a node; its value describes its children: ``None`` (or
        an empty container) for a leaf, another mapping, or a list/tuple whose items are
        names (leaves) or mappings. The nodes are numbered breadth first, siblings in the
        order given, so every sibling group has consecutive indices.

        Args:
            hierarchy: a mapping as described above (several top-level keys give several
                roots).

        Returns:
            A `WordTree`.

        Example:

        ```python
        tree = WordTree.from_hierarchy(
            {"polygon": {"quadrilateral": ["square", "rectangle"], "triangle": None},
             "ellipse": ["circle"]}
        )
        tree.names  # ('polygon', 'ellipse', 'quadrilateral', 'triangle', 'circle', ...)
        ```
        """
        if not isinstance(hierarchy, collections.abc.Mapping):
            raise TypeError(
                "WordTree.from_hierarchy: `hierarchy` must be a mapping of names to "
                f"children; received type {type(hierarchy).__name__}."
            )
        if not hierarchy:
            raise ValueError("WordTree.from_hierarchy: `hierarchy` is empty; expected at least one node.")
        names, parents = [], []
        queue = collections.deque([(-1, hierarchy, "hierarchy")])
        while queue:
            parent, children, where = queue.popleft()
            for name, grandchildren, child_where in _iterate_children(children, where):
                parents.append(parent)
                names.append(name)
                if grandchildren is not None:
                    queue.append((len(names) - 1, grandchildren, child_where))
        return cls(names, parents)

    def get_config(self):
        """Returns ``{"names": [...], "parents": [...]}``, JSON-serialisable."""
        return {"names": list(self._names), "parents": [int(p) for p in self._parents]}

    @classmethod
    def from_config(cls, config):
        """Inverse of `get_config`."""
        if not isinstance(config, collections.abc.Mapping) or set(config) != {"names", "parents"}:
            raise ValueError(
                "WordTree.from_config: `config` must be a mapping with exactly the keys "
                f"'names' and 'parents'; received {config!r:.200}."
            )
        return cls(config["names"], config["parents"])

    @classmethod
    def coerce(cls, word_tree, argument="word_tree"):
        """Returns ``word_tree`` if it is a `WordTree`, or builds one from its config dict.

        Args:
            word_tree: a `WordTree` or a dict from `WordTree.get_config`.
            argument: the argument name used in error messages.
        """
        if isinstance(word_tree, WordTree):
            return word_tree
        if isinstance(word_tree, collections.abc.Mapping):
            return cls.from_config(word_tree)
        raise TypeError(
            f"`{argument}` must be a kerasdet WordTree or its config dict "
            f"{{'names': [...], 'parents': [...]}}; received type {type(word_tree).__name__}."
        )

    # -- basic properties -----------------------------------------------------------

    @property
    def names(self):
        """Tuple of node names."""
        return self._names

    @property
    def parents(self):
        """Read-only int32 array ``[num_nodes]`` of parent indices (-1 for roots)."""
        return self._parents

    @property
    def num_nodes(self):
        return len(self._names)

    def __len__(self):
        return len(self._names)

    @property
    def depths(self):
        """Read-only int32 array ``[num_nodes]``: 0 for roots, parent's depth + 1 otherwise."""
        return self._depths

    @property
    def max_depth(self):
        return int(self._depths.max())

    @property
    def roots(self):
        """Tuple of the indices of the roots, in index order."""
        return tuple(int(i) for i in np.flatnonzero(self._parents < 0))

    @property
    def leaves(self):
        """Tuple of the indices of the nodes without children, in index order."""
        return tuple(int(i) for i in np.flatnonzero(~self._has_children))

    def index(self, name):
        """Returns the index of the node called ``name``; raises KeyError if none is."""
        try:
            return self._index[name]
        except (KeyError, TypeError):
            raise KeyError(f"WordTree has no node named {name!r}.") from None

    def __contains__(self, name):
        return name in self._index

    def children(self, node):
        """Tuple of the children of ``node`` (an index or a name), in index order."""
        node = self._node(node)
        if not self._has_children[node]:
            return ()
        return self.group_members(int(self._child_group[node]))

    def path(self, node):
        """Tuple ``(node, parent, grandparent, ..., root)`` of indices."""
        node = self._node(node)
        out = [node]
        while self._parents[out[-1]] >= 0:
            out.append(int(self._parents[out[-1]]))
        return tuple(out)

    # -- sibling groups -------------------------------------------------------------

    @property
    def num_groups(self):
        """Number of sibling groups (the roots count as one group)."""
        return len(self._group_parents)

    @property
    def group_ids(self):
        """Read-only int32 array ``[num_nodes]``: the sibling group of every node."""
        return self._group_ids

    @property
    def group_parents(self):
        """Read-only int32 array ``[num_groups]``: the common parent of each group (-1 for group 0)."""
        return self._group_parents

    def group_members(self, group):
        """Tuple of the node indices in sibling group ``group``, in index order."""
        if not isinstance(group, numbers.Integral) or not 0 <= group < self.num_groups:
            raise ValueError(
                f"`group` must be an int in [0, {self.num_groups}); received {group!r}."
            )
        return tuple(int(i) for i in np.flatnonzero(self._group_ids == group))

    @property
    def groups_are_contiguous(self):
        """True when every sibling group occupies consecutive indices (darknet's layout)."""
        order = self._group_ids
        changes = np.flatnonzero(np.diff(order) != 0)
        run_groups = np.concatenate([order[:1], order[changes + 1]])
        return len(np.unique(run_groups)) == len(run_groups)

    # -- index tables for vectorised ops ----------------------------------------------

    def ancestor_table(self):
        """Int32 array ``[num_nodes, max_depth + 1]``: row ``i`` is `path(i)` padded with ``num_nodes``.

        The padding value ``num_nodes`` is out of range on purpose: callers mask it.
        """
        if self._ancestor_table is None:
            table = np.full((self.num_nodes, self.max_depth + 1), self.num_nodes, np.int32)
            table[:, 0] = np.arange(self.num_nodes)
            for column in range(1, table.shape[1]):
                previous = table[:, column - 1]
                valid = previous < self.num_nodes
                parents = np.where(valid, self._parents[np.minimum(previous, self.num_nodes - 1)], -1)
                table[:, column] = np.where(valid & (parents >= 0), parents, self.num_nodes)
            table.setflags(write=False)
            self._ancestor_table = table
        return self._ancestor_table

    def levels(self):
        """Tuple of int32 arrays: entry ``d`` lists the nodes of depth ``d`` in index order."""
        if self._levels is None:
            order = np.argsort(self._depths, kind="stable").astype(np.int32)
            bounds = np.searchsorted(self._depths[order], np.arange(self.max_depth + 2))
            levels = []
            for depth in range(self.max_depth + 1):
                level = order[bounds[depth] : bounds[depth + 1]].copy()
                level.setflags(write=False)
                levels.append(level)
            self._levels = tuple(levels)
        return self._levels

    # -- misc -------------------------------------------------------------------------

    def __eq__(self, other):
        if not isinstance(other, WordTree):
            return NotImplemented
        return self._names == other._names and np.array_equal(self._parents, other._parents)

    def __hash__(self):
        return hash((self._names, self._parents.tobytes()))

    def __repr__(self):
        shown = ", ".join(repr(n) for n in self._names[:4])
        more = ", ..." if self.num_nodes > 4 else ""
        return (
            f"WordTree(num_nodes={self.num_nodes}, num_groups={self.num_groups}, "
            f"max_depth={self.max_depth}, names=({shown}{more}))"
        )

    def _node(self, node):
        if isinstance(node, str):
            return self.index(node)
        if isinstance(node, numbers.Integral) and not isinstance(node, bool) and 0 <= node < self.num_nodes:
            return int(node)
        raise ValueError(
            f"`node` must be a node name or an int in [0, {self.num_nodes}); received {node!r}."
        )

    def _build_groups(self):
        n = len(self._names)
        self._index = {name: i for i, name in enumerate(self._names)}
        has_children = np.zeros(n, bool)
        has_children[self._parents[self._parents >= 0]] = True
        group_parents = np.concatenate([[-1], np.flatnonzero(has_children)]).astype(np.int32)
        child_group = np.full(n, -1, np.int32)
        child_group[group_parents[1:]] = np.arange(1, len(group_parents), dtype=np.int32)
        group_ids = np.where(self._parents >= 0, child_group[self._parents], 0).astype(np.int32)
        for array in (has_children, group_parents, child_group, group_ids):
            array.setflags(write=False)
        self._has_children = has_children
        self._group_parents = group_parents
        self._child_group = child_group
        self._group_ids = group_ids


def _validate_names(names):
    if isinstance(names, (str, bytes)) or not isinstance(names, (collections.abc.Sequence, np.ndarray)):
        raise TypeError(
            f"WordTree: `names` must be a sequence of strings; received type {type(names).__name__}."
        )
    names = tuple(names)
    if not names:
        raise ValueError("WordTree: `names` is empty; expected at least one node.")
    seen = {}
    for i, name in enumerate(names):
        if isinstance(name, np.str_):
            name = str(name)
        if not isinstance(name, str):
            raise TypeError(f"WordTree: `names[{i}]` must be a str; received type {type(name).__name__}.")
        if not name:
            raise ValueError(f"WordTree: `names[{i}]` is an empty string; expected a non-empty name.")
        if name in seen:
            raise ValueError(
                f"WordTree: `names[{i}]` = {name!r} repeats `names[{seen[name]}]`; names must be unique."
            )
        seen[name] = i
    return tuple(str(n) for n in names)


def _validate_parents(parents, names):
    if isinstance(parents, (str, bytes)) or not isinstance(parents, (collections.abc.Sequence, np.ndarray)):
        raise TypeError(
            f"WordTree: `parents` must be a sequence of ints; received type {type(parents).__name__}."
        )
    parents = list(parents)
    n = len(names)
    if len(parents) != n:
        raise ValueError(
            f"WordTree: `parents` has length {len(parents)} but `names` has length {n}; "
            "expected one parent index per name."
        )
    for i, parent in enumerate(parents):
        if isinstance(parent, (bool, np.bool_)) or not isinstance(parent, numbers.Integral):
            raise TypeError(
                f"WordTree: `parents[{i}]` must be an int; received {parent!r} of type {type(parent).__name__}."
            )
        if not -1 <= parent < n:
            raise ValueError(
                f"WordTree: `parents[{i}]` = {parent} (node {names[i]!r}) is out of range; "
                f"expected -1 (a root) or an index in [0, {n})."
            )
        if parent == i:
            raise ValueError(f"WordTree: `parents[{i}]` = {i}: node {names[i]!r} is its own parent.")
    array = np.asarray(parents, dtype=np.int32).reshape(n)
    array.setflags(write=False)
    return array


def _depths_or_raise(parents, names):
    """Depth of every node; raises ValueError naming the nodes of a cycle."""
    n = len(parents)
    depths = np.full(n, -1, np.int64)
    for start in range(n):
        chain = []
        on_chain = set()
        node = start
        while node >= 0 and depths[node] < 0:
            if node in on_chain:
                cycle = chain[chain.index(node):] + [node]
                shown = " -> ".join(f"{names[c]!r} ({c})" for c in cycle[:12])
                raise ValueError(
                    f"WordTree: `parents` form a cycle: {shown}{' ...' if len(cycle) > 12 else ''}; "
                    "expected every chain of parents to end at a root (-1)."
                )
            chain.append(node)
            on_chain.add(node)
            node = int(parents[node])
        base = -1 if node < 0 else depths[node]
        for offset, member in enumerate(reversed(chain)):
            depths[member] = base + 1 + offset
    depths = depths.astype(np.int32)
    depths.setflags(write=False)
    return depths


def _iterate_children(children, where):
    """Yields ``(name, grandchildren_or_None, where)`` for one level of `from_hierarchy` input."""
    if children is None:
        return
    if isinstance(children, collections.abc.Mapping):
        for name, grandchildren in children.items():
            _check_hierarchy_name(name, where)
            yield name, grandchildren, f"{where}[{name!r}]"
        return
    if isinstance(children, (list, tuple)):
        for position, item in enumerate(children):
            if isinstance(item, collections.abc.Mapping):
                yield from _iterate_children(item, f"{where}[{position}]")
            else:
                _check_hierarchy_name(item, f"{where}[{position}]")
                yield item, None, f"{where}[{position}]"
        return
    raise TypeError(
        f"WordTree.from_hierarchy: the children at {where} must be None, a mapping or a "
        f"list/tuple of names and mappings; received type {type(children).__name__}."
    )


def _check_hierarchy_name(name, where):
    if not isinstance(name, str) or not name:
        raise TypeError(
            f"WordTree.from_hierarchy: node names must be non-empty strings; received {name!r} at {where}."
        )
