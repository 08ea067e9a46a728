"""Readers that build YOLO9000 WordTrees: darknet ``.tree`` files and WordNet 3.0 dict files.

The readers return ``(names, parents)``: two lists, ready for
``kerasdet.layers.word_tree.WordTree(names, parents)`` (the data package imports only
``ops``, so the tree object itself is made by the caller).

Reference: Redmon & Farhadi, "YOLO9000: Better, Faster, Stronger", CVPR 2017, §4;
Princeton WordNet 3.0 file formats, wndb(5WN).
"""

import collections
import collections.abc
import os
import re


def read_darknet_tree(path):
    """Reads a darknet ``.tree`` file (YOLO9000's ``9k.tree`` format).

    Each line is ``name parent_index``, where ``parent_index`` is the 0-based line number
    of the parent, or -1 for a root. As in darknet, the children of one parent (and the
    roots) must be on consecutive lines: darknet makes one softmax group per run of
    equal parents, so a parent whose children were split over several runs would mean
    something else there. Blank lines are allowed only at the end of the file.

    Args:
        path: path of the ``.tree`` file.

    Returns:
        ``(names, parents)``: a list of str and a list of int.

    Raises:
        ValueError: naming the file and the 1-based line for a malformed line, a parent
            out of range, a repeated name, split siblings or a cycle.

    Example:

    ```python
    names, parents = read_darknet_tree("9k.tree")
    tree = WordTree(names, parents)
    ```
    """
    path = os.fspath(path)
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ValueError(f"{path}: the file is empty; expected lines 'name parent_index'.")
    names, parents, seen = [], [], {}
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if len(fields) != 2 or not re.fullmatch(r"-?\d+", fields[1]):
            raise ValueError(
                f"{path}, line {number}: expected 'name parent_index' (a name and an integer); "
                f"received {line!r}."
            )
        name, parent = fields[0], int(fields[1])
        if name in seen:
            raise ValueError(f"{path}, line {number}: name {name!r} repeats line {seen[name]}.")
        seen[name] = number
        names.append(name)
        parents.append(parent)
    _check_darknet_parents(path, names, parents)
    return names, parents


def write_darknet_tree(names, parents, path):
    """Writes ``names`` and ``parents`` as a darknet ``.tree`` file (inverse of `read_darknet_tree`).

    Args:
        names: sequence of names without whitespace.
        parents: sequence of parent indices (-1 for roots), siblings on consecutive
            indices (`WordTree.groups_are_contiguous`).
        path: output path.

    Example:

    ```python
    write_darknet_tree(tree.names, tree.parents, "shapes.tree")
    ```
    """
    names, parents = list(names), [int(p) for p in parents]
    if len(names) != len(parents):
        raise ValueError(
            f"`names` has length {len(names)} but `parents` has length {len(parents)}; expected equal lengths."
        )
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise ValueError(f"`names[{i}]` = {name!r}: darknet .tree names must be non-empty and without whitespace.")
    _check_darknet_parents(os.fspath(path), names, parents, writing=True)
    with open(path, "w", encoding="utf-8") as handle:
        for name, parent in zip(names, parents):
            handle.write(f"{name} {parent}\n")


def _check_darknet_parents(path, names, parents, writing=False):
    """Range, contiguity and cycle checks with file/line (or index) in the messages."""
    n = len(names)

    def where(i):
        return f"`parents[{i}]` (node {names[i]!r})" if writing else f"{path}, line {i + 1}"

    for i, parent in enumerate(parents):
        if not -1 <= parent < n or parent == i:
            raise ValueError(
                f"{where(i)}: parent index {parent} is invalid; expected -1 or the index of another "
                f"line in [0, {n})."
            )
    finished = set()
    for i, parent in enumerate(parents):
        if i > 0 and parent != parents[i - 1] and parent in finished:
            raise ValueError(
                f"{where(i)}: the children of parent {parent} are not on consecutive lines; darknet "
                "makes one softmax group per run of equal parents, so siblings must be adjacent."
            )
        if i > 0 and parent != parents[i - 1]:
            finished.add(parents[i - 1])
    state = [0] * n  # 0 unseen, 1 on the current chain, 2 reaches a root
    for start in range(n):
        chain, node = [], start
        while node >= 0 and state[node] == 0:
            state[node] = 1
            chain.append(node)
            node = parents[node]
        if node >= 0 and state[node] == 1:
            raise ValueError(
                f"{where(node)}: the parent links form a cycle through "
                + ", ".join(f"{names[c]!r}" for c in chain[chain.index(node):][:12])
                + "; expected every chain of parents to end at a root (-1)."
            )
        for member in chain:
            state[member] = 2


# -- WordNet --------------------------------------------------------------------------------

_HYPERNYM_POINTERS = ("@", "@i")  # hypernym and instance hypernym


class WordNet:
    """The noun hierarchy of a WordNet 3.0 dictionary directory, for building WordTrees.

    Reads ``data.noun`` and ``index.noun`` (the Princeton "dict" files, shipped for example
    by Debian's ``wordnet-base`` in ``/usr/share/wordnet``). Nothing is downloaded.
    Synsets are named by ImageNet-style ids ``"n%08d" % offset`` (e.g. ``"n02084071"``
    for dog).

    Args:
        directory: the directory holding ``data.noun`` and ``index.noun``.

    Example:

    ```python
    wordnet = WordNet("/usr/share/wordnet")
    names, parents = wordnet.build_tree(["n02084071", "cat", "car.n.01"])
    tree = WordTree(names, parents)
    wordnet.words("n02084071")  # ('dog', 'domestic_dog', 'Canis_familiaris')
    ```
    """

    def __init__(self, directory):
        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            raise ValueError(
                f"`directory` {directory!r} is not a directory; expected a WordNet 3.0 dict directory "
                "with data.noun and index.noun (e.g. /usr/share/wordnet from Debian's wordnet-base)."
            )
        self.directory = directory
        self._data_path = self._required(directory, "data.noun")
        self._index_path = self._required(directory, "index.noun")
        self._synsets = self._read_data(self._data_path)
        self._senses = self._read_index(self._index_path)
        self._paths_cache = {}

    # -- lookups --------------------------------------------------------------------------

    def synset(self, query):
        """Returns the synset id for ``query``.

        Args:
            query: a synset id ``"n02084071"``, a sense ``"dog.n.01"`` (lemma, pos,
                1-based sense number), or a lemma ``"dog"`` / ``"hot dog"`` (its first,
                most frequent sense).

        Returns:
            The id, a str like ``"n02084071"``.
        """
        if not isinstance(query, str) or not query.strip():
            raise TypeError(f"`query` must be a non-empty str; received {query!r}.")
        text = query.strip()
        match = re.fullmatch(r"n(\d{8})", text)
        if match:
            if int(match.group(1)) not in self._synsets:
                raise KeyError(f"{self._data_path}: no noun synset with offset {match.group(1)} (query {query!r}).")
            return text
        match = re.fullmatch(r"(.+)\.n\.(\d+)", text)
        lemma = (match.group(1) if match else text).lower().replace(" ", "_")
        sense = int(match.group(2)) if match else 1
        offsets = self._senses.get(lemma)
        if offsets is None:
            raise KeyError(f"{self._index_path}: no noun {lemma!r} (query {query!r}).")
        if not 1 <= sense <= len(offsets):
            raise KeyError(
                f"{self._index_path}: noun {lemma!r} has {len(offsets)} senses; query {query!r} asks for sense {sense}."
            )
        return _wnid(offsets[sense - 1])

    def words(self, synset):
        """Tuple of the lemmas of ``synset`` (an id or any `synset` query), as written in data.noun."""
        return self._entry(synset)[1]

    def hypernyms(self, synset):
        """Tuple of the ids of the hypernyms and instance hypernyms of ``synset``."""
        return tuple(_wnid(o) for o in self._entry(synset)[2])

    def hypernym_paths(self, synset):
        """All paths from a top synset (one without hypernyms) down to ``synset``.

        Returns:
            A tuple of tuples of ids, each starting at a top synset and ending at
            ``synset``, sorted by length, then by the ids.
        """
        offset = int(self.synset(synset)[1:])
        return tuple(tuple(_wnid(o) for o in path) for path in self._paths(offset, ()))

    # -- tree building ------------------------------------------------------------------

    def build_tree(self, synsets, root=None, include_root=True):
        """Builds a WordTree ``(names, parents)`` holding ``synsets`` and their hypernym paths.

        Paths are chosen as in YOLO9000: first, every requested synset with a single
        hypernym path adds that path; then, for each other synset (in the given order),
        its shortest path is added, ties going to the path that adds the fewest new
        nodes to the tree built so far, then to the smaller sequence of ids. A path is
        merged from the requested synset upwards and stops at the first node already in
        the tree, so every node keeps the parent it got first. Names are synset ids;
        the nodes are numbered breadth first (siblings adjacent, in order of insertion).

        Args:
            synsets: sequence of synset queries (see `synset`); repeats are merged.
            root: optional synset query. Only paths through it are used (an error is
                raised for a requested synset below none), cut so that they start there.
                None uses WordNet's top synset(s) (``entity`` in WordNet 3.0).
            include_root: when False, ``root`` itself is left out and its children become
                the roots (darknet's ``9k.tree`` has the children of ``physical_entity``
                as its roots). Requires ``root``.

        Returns:
            ``(names, parents)`` for `kerasdet.layers.word_tree.WordTree`.
        """
        if isinstance(synsets, str) or not isinstance(synsets, collections.abc.Iterable):
            raise TypeError(f"`synsets` must be a sequence of synset queries; received {type(synsets).__name__}.")
        if not isinstance(include_root, bool):
            raise TypeError(f"`include_root` must be a bool; received {include_root!r}.")
        if not include_root and root is None:
            raise ValueError("`include_root=False` requires a `root` synset.")
        requested = list(dict.fromkeys(int(self.synset(s)[1:]) for s in synsets))
        if not requested:
            raise ValueError("`synsets` is empty; expected at least one synset.")
        root_offset = None if root is None else int(self.synset(root)[1:])
        if not include_root and root_offset in requested:
            raise ValueError(f"`synsets` contains the root {_wnid(root_offset)} but `include_root` is False.")
        candidates = {offset: self._candidate_paths(offset, root_offset) for offset in requested}

        parent_of = {}  # offset -> parent offset (None for a root); insertion order kept
        for offset in requested:  # pass 1: synsets with a single path
            if len(candidates[offset]) == 1:
                self._merge(parent_of, candidates[offset][0])
        for offset in requested:  # pass 2: shortest path, fewest new nodes, smallest ids
            paths = candidates[offset]
            if len(paths) > 1:
                shortest = min(len(p) for p in paths)
                best = min(
                    (p for p in paths if len(p) == shortest),
                    key=lambda p: (self._new_nodes(parent_of, p), p),
                )
                self._merge(parent_of, best)
        if not include_root:
            del parent_of[root_offset]
            parent_of = {o: (None if p == root_offset else p) for o, p in parent_of.items()}
        return _breadth_first(parent_of)

    # -- internals -------------------------------------------------------------------------

    @staticmethod
    def _required(directory, filename):
        path = os.path.join(directory, filename)
        if not os.path.isfile(path):
            raise ValueError(
                f"{path} is missing; a WordNet 3.0 dict directory must hold data.noun and index.noun "
                "(Debian: apt install wordnet-base, then /usr/share/wordnet)."
            )
        return path

    def _entry(self, synset):
        offset = int(self.synset(synset)[1:])
        return self._synsets[offset]

    def _candidate_paths(self, offset, root_offset):
        paths = self._paths(offset, ())
        if root_offset is None:
            return list(paths)
        cut = []
        for path in paths:
            if root_offset in path:
                cut.append(path[path.index(root_offset):])
        if not cut:
            raise ValueError(
                f"`synsets`: {_wnid(offset)} ({self._synsets[offset][1][0]}) has no hypernym path through "
                f"the root {_wnid(root_offset)} ({self._synsets[root_offset][1][0]})."
            )
        return sorted(set(cut), key=lambda p: (len(p), p))

    def _paths(self, offset, below):
        """All hypernym paths (tuples of offsets, top first) ending at ``offset``."""
        if offset in self._paths_cache:
            return self._paths_cache[offset]
        if offset in below:
            line = self._synsets[offset][0]
            raise ValueError(f"{self._data_path}, line {line}: the hypernym pointers form a cycle through {_wnid(offset)}.")
        line, _, hypernyms = self._synsets[offset]
        paths = []
        for hypernym in hypernyms:
            if hypernym not in self._synsets:
                raise ValueError(
                    f"{self._data_path}, line {line}: hypernym pointer to offset {hypernym:08d}, "
                    "which is not a synset in the file."
                )
            paths.extend(p + (offset,) for p in self._paths(hypernym, below + (offset,)))
        if not hypernyms:
            paths = [(offset,)]
        result = tuple(sorted(set(paths), key=lambda p: (len(p), p)))
        self._paths_cache[offset] = result
        return result

    @staticmethod
    def _new_nodes(parent_of, path):
        count = 0
        for node in reversed(path):
            if node in parent_of:
                break
            count += 1
        return count

    @staticmethod
    def _merge(parent_of, path):
        """Adds ``path`` (top first) bottom-up until it meets a node already in the tree."""
        additions = []
        for depth in range(len(path) - 1, -1, -1):
            node = path[depth]
            if node in parent_of:
                break
            additions.append((node, path[depth - 1] if depth > 0 else None))
        for node, parent in reversed(additions):
            parent_of[node] = parent

    @staticmethod
    def _read_data(path):
        """Parses data.noun into {offset: (line number, lemmas, hypernym offsets)}."""
        synsets = {}
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                if line.startswith("  ") or not line.strip():
                    continue  # license header
                synsets_entry = _parse_data_line(path, number, line)
                synsets[synsets_entry[0]] = (number,) + synsets_entry[1:]
        if not synsets:
            raise ValueError(f"{path}: no synset lines found; expected a WordNet 3.0 data.noun file.")
        return synsets

    @staticmethod
    def _read_index(path):
        """Parses index.noun into {lemma: [synset offsets in sense order]}."""
        senses = {}
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                if line.startswith("  ") or not line.strip():
                    continue
                lemma, offsets = _parse_index_line(path, number, line)
                senses[lemma] = offsets
        return senses


def _parse_data_line(path, number, line):
    """``offset lex_filenum ss_type w_cnt (word lex_id)* p_cnt (sym offset pos st)* | gloss``."""

    def fail(reason):
        return ValueError(f"{path}, line {number}: {reason}; line starts {line[:80]!r}.")

    fields = line.split(" | ", 1)[0].split()
    try:
        if len(fields) < 4 or not re.fullmatch(r"\d{8}", fields[0]):
            raise fail("expected 'synset_offset lex_filenum ss_type w_cnt ...' with an 8-digit offset")
        if fields[2] != "n":
            raise fail(f"ss_type is {fields[2]!r}; data.noun holds only noun synsets ('n')")
        word_count = int(fields[3], 16)
        position = 4 + 2 * word_count
        words = tuple(fields[4:position:2])
        if word_count < 1 or len(fields) <= position or len(words) != word_count:
            raise fail(f"w_cnt is {fields[3]} but the words and p_cnt do not follow")
        pointer_count = int(fields[position])
        pointers = fields[position + 1 : position + 1 + 4 * pointer_count]
        if len(pointers) != 4 * pointer_count:
            raise fail(f"p_cnt is {pointer_count} but fewer pointers follow")
    except ValueError as error:
        if str(error).startswith(f"{path}, line"):
            raise
        raise fail(f"a count field is not a number ({error})") from None
    hypernyms = []
    for k in range(pointer_count):
        symbol, target, pos = pointers[4 * k : 4 * k + 3]
        if symbol in _HYPERNYM_POINTERS and pos == "n":
            if not re.fullmatch(r"\d{8}", target):
                raise fail(f"pointer {k} has offset {target!r}; expected 8 digits")
            hypernyms.append(int(target))
    return int(fields[0]), words, tuple(hypernyms)


def _parse_index_line(path, number, line):
    """``lemma pos synset_cnt p_cnt (ptr_symbol)* sense_cnt tagsense_cnt (synset_offset)*``."""
    fields = line.split()
    try:
        lemma, pos, synset_count, pointer_count = fields[0], fields[1], int(fields[2]), int(fields[3])
        offsets = fields[4 + pointer_count + 2 :]
        if pos != "n" or len(offsets) != synset_count or not all(re.fullmatch(r"\d{8}", o) for o in offsets):
            raise ValueError
    except (ValueError, IndexError):
        raise ValueError(
            f"{path}, line {number}: expected 'lemma n synset_cnt p_cnt ptr_symbol... sense_cnt "
            f"tagsense_cnt synset_offset...' with synset_cnt 8-digit offsets; line starts {line[:80]!r}."
        ) from None
    return lemma.lower(), [int(o) for o in offsets]


def _wnid(offset):
    return f"n{offset:08d}"


def _breadth_first(parent_of):
    """``(names, parents)`` in breadth-first order; children in insertion order."""
    children = collections.defaultdict(list)
    for node, parent in parent_of.items():
        children[parent].append(node)
    order = []
    queue = collections.deque(children[None])
    while queue:
        node = queue.popleft()
        order.append(node)
        queue.extend(children[node])
    index = {node: i for i, node in enumerate(order)}
    names = [_wnid(node) for node in order]
    parents = [-1 if parent_of[node] is None else index[parent_of[node]] for node in order]
    return names, parents
