"""Readers for darknet .tree files and WordNet 3.0 dict directories (a tiny fake WordNet is written here)."""

import numpy as np
import pytest

from kerasdet.data.word_tree_sources import WordNet, read_darknet_tree, write_darknet_tree
from kerasdet.layers.word_tree import WordTree

# -- darknet .tree -------------------------------------------------------------------------------------


def test_darknet_round_trip(tmp_path):
    tree = WordTree.from_hierarchy({"polygon": {"quadrilateral": ["square", "rectangle"], "triangle": None}, "ellipse": ["circle"]})
    path = tmp_path / "shapes.tree"
    write_darknet_tree(tree.names, tree.parents, path)
    assert path.read_text().splitlines()[:3] == ["polygon -1", "ellipse -1", "quadrilateral 0"]
    names, parents = read_darknet_tree(path)
    assert WordTree(names, parents) == tree


def test_darknet_reads_9k_style_layout(tmp_path):
    # 9k.tree style: roots first, each sibling run contiguous, runs in any order, trailing newline
    text = "n00002452 -1\nn00020827 -1\nn00002684 -1\nn05220461 0\nn09225146 0\nn14877585 1\nn05538625 3\nn09335240 2\n\n"
    path = tmp_path / "9k.tree"
    path.write_text(text)
    names, parents = read_darknet_tree(path)
    assert names[6] == "n05538625" and parents == [-1, -1, -1, 0, 0, 1, 3, 2]
    tree = WordTree(names, parents)
    assert tree.groups_are_contiguous and tree.path("n05538625") == (6, 3, 0)


@pytest.mark.parametrize(
    "text, match",
    [
        ("a -1\nb 0 extra\n", r"line 2: expected 'name parent_index'"),
        ("a -1\nb x\n", r"line 2: expected"),
        ("a -1\n\nb 0\n", r"line 2: expected"),
        ("a -1\nb 5\n", r"line 2: parent index 5 is invalid"),
        ("a -1\nb -3\n", r"line 2: parent index -3"),
        ("a -1\nb 1\n", r"line 2: parent index 1"),
        ("a -1\nb 0\na 0\n", r"line 3: name 'a' repeats line 1"),
        ("a -1\nb -1\nc 0\nd 1\ne 0\n", r"line 5: the children of parent 0 are not on consecutive lines"),
        ("a -1\nb 2\nc 1\n", r"line \d: the parent links form a cycle"),
        ("\n\n", r"empty"),
    ],
)
def test_darknet_errors_name_file_and_line(tmp_path, text, match):
    path = tmp_path / "bad.tree"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        read_darknet_tree(path)
    assert "bad.tree" in str(info.value)


def test_darknet_write_errors(tmp_path):
    with pytest.raises(ValueError, match="whitespace"):
        write_darknet_tree(["a b"], [-1], tmp_path / "x.tree")
    with pytest.raises(ValueError, match="consecutive"):
        write_darknet_tree(["a", "b", "c", "d"], [-1, 0, -1, 0], tmp_path / "x.tree")
    with pytest.raises(ValueError, match="length"):
        write_darknet_tree(["a"], [-1, 0], tmp_path / "x.tree")


# -- a fake WordNet 3.0 dict directory in the real file format ---------------------------------------

# key: (words, hypernyms, instance hypernyms); offsets come from the byte layout as in real files
FAKE_SYNSETS = {
    "entity": (["entity"], [], []),
    "physical_entity": (["physical_entity"], ["entity"], []),
    "abstraction": (["abstraction", "abstract_entity"], ["entity"], []),
    "object": (["object", "physical_object"], ["physical_entity"], []),
    "living_thing": (["living_thing", "animate_thing"], ["object"], []),
    "organism": (["organism", "being"], ["living_thing"], []),
    "animal": (["animal", "animate_being", "beast"], ["organism"], []),
    "carnivore": (["carnivore"], ["animal"], []),
    "canine": (["canine", "canid"], ["carnivore"], []),
    "domestic_animal": (["domestic_animal", "domesticated_animal"], ["animal"], []),
    "dog": (["dog", "domestic_dog", "Canis_familiaris"], ["canine", "domestic_animal"], []),
    "wolf": (["wolf"], ["canine"], []),
    "hound": (["hound", "hound_dog"], ["dog"], []),
    "lassie": (["Lassie"], [], ["dog"]),
    "person": (["person", "individual"], ["organism"], []),
    "frump": (["frump", "dog"], ["person"], []),
    "food": (["food", "nutrient"], ["physical_entity"], []),
    "hotdog": (["hotdog", "hot_dog", "red_hot"], ["food"], []),
    # two equally short paths: via food (already in the tree when asked after hotdog) or via thought
    "idea": (["idea", "thought"], ["abstraction"], []),
    "snack": (["snack"], ["food", "idea"], []),
}
LICENSE = [
    "  1 Fake WordNet dict file written by the kerasdet tests.",
    "  2 Same layout as the Princeton WordNet 3.0 database files.",
]


def write_fake_wordnet(directory, synsets=FAKE_SYNSETS, corrupt=None):
    """Writes data.noun and index.noun; offsets are the byte positions of the lines."""
    directory.mkdir(exist_ok=True)
    keys = list(synsets)
    hyponyms = {k: [] for k in keys}
    for key, (_, hypers, instances) in synsets.items():
        for h in hypers:
            hyponyms[h].append(("~", key))
        for h in instances:
            hyponyms[h].append(("~i", key))

    def line(key, offsets):
        words, hypers, instances = synsets[key]
        pointers = [("@", h) for h in hypers] + [("@i", h) for h in instances] + hyponyms[key]
        pointers.append(("+", key))  # a derivation pointer the reader must skip
        word_part = " ".join(f"{w} 0" for w in words)
        pointer_part = " ".join(f"{s} {offsets[t]:08d} n 0000" for s, t in pointers)
        return f"{offsets[key]:08d} 03 n {len(words):02x} {word_part} {len(pointers):03d} {pointer_part} | a gloss; \"quoted\"  \n"

    header = "".join(f"{text}\n" for text in LICENSE)
    dummy = {k: 0 for k in keys}
    offsets, position = {}, len(header.encode())
    for key in keys:
        offsets[key] = position
        position += len(line(key, dummy).encode())
    body = [line(key, offsets) for key in keys]
    if corrupt is not None:
        index, text = corrupt
        body[index] = text
    (directory / "data.noun").write_text(header + "".join(body))

    senses = {}
    for key in keys:
        for word in synsets[key][0]:
            senses.setdefault(word.lower(), []).append(offsets[key])
    index_lines = [
        f"{lemma} n {len(offs)} 2 @ ~ {len(offs)} 0 {' '.join(f'{o:08d}' for o in offs)}  \n"
        for lemma, offs in sorted(senses.items())
    ]
    (directory / "index.noun").write_text(header + "".join(index_lines))
    return {key: f"n{offset:08d}" for key, offset in offsets.items()}


@pytest.fixture
def wordnet(tmp_path):
    ids = write_fake_wordnet(tmp_path / "dict")
    return WordNet(tmp_path / "dict"), ids


def test_offsets_are_byte_positions(wordnet, tmp_path):
    # the fake files follow the real layout: seeking to an offset lands on its line
    _, ids = wordnet
    data = (tmp_path / "dict" / "data.noun").read_bytes()
    for wnid in ids.values():
        offset = int(wnid[1:])
        assert data[offset : offset + 8].decode() == wnid[1:]


def test_lookups(wordnet):
    wn, ids = wordnet
    assert wn.synset(ids["dog"]) == ids["dog"]
    assert wn.synset("dog") == ids["dog"]  # first sense
    assert wn.synset("dog.n.02") == ids["frump"]
    assert wn.synset("Hot Dog") == ids["hotdog"]
    assert wn.words(ids["dog"]) == ("dog", "domestic_dog", "Canis_familiaris")
    assert set(wn.hypernyms("dog")) == {ids["canine"], ids["domestic_animal"]}
    assert wn.hypernyms("lassie") == (ids["dog"],)  # instance hypernym
    paths = wn.hypernym_paths("hound")
    assert len(paths) == 2 and all(p[0] == ids["entity"] and p[-1] == ids["hound"] for p in paths)
    assert len(paths[0]) < len(paths[1]) and ids["domestic_animal"] in paths[0]
    for bad in ("n99999999", "unicorn", "dog.n.03"):
        with pytest.raises(KeyError):
            wn.synset(bad)


def test_build_tree_shortest_paths(wordnet):
    wn, ids = wordnet
    names, parents = wn.build_tree(["wolf", "hound", "dog", "lassie", "person"])
    tree = WordTree(names, parents)
    name = {v: k for k, v in ids.items()}

    def chain(key):
        return [name[tree.names[i]] for i in tree.path(ids[key])][::-1]

    # wolf has a single path (pass 1); dog's shortest path goes through domestic_animal
    assert chain("wolf") == ["entity", "physical_entity", "object", "living_thing", "organism", "animal", "carnivore", "canine", "wolf"]
    assert chain("dog")[-3:] == ["animal", "domestic_animal", "dog"]
    assert chain("hound")[-2:] == ["dog", "hound"]
    assert chain("lassie")[-2:] == ["dog", "lassie"]
    assert chain("person")[-2:] == ["organism", "person"]
    assert tree.roots == (0,) and tree.names[0] == ids["entity"] and tree.groups_are_contiguous
    assert len(tree) == len(set(tree.names)) == 14


def test_build_tree_ties_prefer_fewest_new_nodes(wordnet):
    wn, ids = wordnet
    # snack: entity>physical_entity>food>snack vs entity>abstraction>idea>snack (same length).
    # With hotdog first, food is already in the tree: the food path adds 1 node, the idea path 2.
    names, parents = wn.build_tree(["hotdog", "snack"])
    tree = WordTree(names, parents)
    assert tree.names[tree.parents[tree.index(ids["snack"])]] == ids["food"]
    assert ids["idea"] not in tree
    # alone, the tie goes to the smaller sequence of offsets, top first
    names, parents = wn.build_tree(["snack"])
    alone = WordTree(names, parents)
    via_food = (ids["entity"], ids["physical_entity"], ids["food"], ids["snack"])
    via_idea = (ids["entity"], ids["abstraction"], ids["idea"], ids["snack"])
    expected = min(via_food, via_idea)
    assert tuple(alone.names[i] for i in alone.path(ids["snack"]))[::-1] == expected


def test_build_tree_with_root(wordnet):
    wn, ids = wordnet
    names, parents = wn.build_tree(["dog", "hotdog"], root="physical_entity", include_root=False)
    tree = WordTree(names, parents)
    assert set(tree.names[r] for r in tree.roots) == {ids["object"], ids["food"]}
    assert ids["physical_entity"] not in tree and ids["entity"] not in tree
    names, parents = wn.build_tree(["dog"], root="animal")
    assert names[0] == ids["animal"] and parents[0] == -1
    with pytest.raises(ValueError, match="no hypernym path through the root"):
        wn.build_tree(["idea"], root="physical_entity")
    with pytest.raises(ValueError, match="include_root"):
        wn.build_tree(["dog"], include_root=False)
    with pytest.raises(ValueError, match="empty"):
        wn.build_tree([])
    with pytest.raises(TypeError, match="synsets"):
        wn.build_tree("dog")


def test_wordnet_directory_errors(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        WordNet(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="data.noun is missing"):
        WordNet(tmp_path / "empty")


@pytest.mark.parametrize(
    "text, match",
    [
        ("garbage line\n", "line 4: expected 'synset_offset"),
        ("00000099 03 v 01 run 0 000 | gloss\n", "line 4: ss_type is 'v'"),
        ("00000099 03 n 02 run 0 000 | gloss\n", "line 4: w_cnt is 02"),
        ("00000099 03 n 01 run 0 002 @ 00000001 n 0000 | gloss\n", "line 4: p_cnt is 2"),
        ("00000099 03 n zz run 0 000 | gloss\n", "line 4: a count field is not a number"),
    ],
)
def test_wordnet_malformed_data_lines(tmp_path, text, match):
    write_fake_wordnet(tmp_path / "dict", corrupt=(1, text))
    with pytest.raises(ValueError, match=match) as info:
        WordNet(tmp_path / "dict")
    assert "data.noun" in str(info.value)


def test_wordnet_dangling_hypernym_and_bad_index(tmp_path):
    directory = tmp_path / "dict"
    write_fake_wordnet(directory)
    lines = (directory / "data.noun").read_text().splitlines(keepends=True)
    lines.append("00999999 03 n 01 ghost 0 001 @ 00888888 n 0000 | nothing  \n")
    (directory / "data.noun").write_text("".join(lines))
    wn = WordNet(directory)
    with pytest.raises(ValueError, match=rf"data.noun, line {len(lines)}: hypernym pointer to offset 00888888"):
        wn.build_tree(["n00999999"])
    (directory / "index.noun").write_text("  1 header\ndog n 2 0 2 0 00000001\n")
    with pytest.raises(ValueError, match="index.noun, line 2"):
        WordNet(directory)


def test_wordnet_tree_feeds_the_softmax(wordnet):
    from kerasdet.layers.hierarchical_softmax import HierarchicalSoftmax

    wn, _ = wordnet
    tree = WordTree(*wn.build_tree(["hound", "wolf", "hotdog", "person"]))
    conditional = np.asarray(HierarchicalSoftmax(tree)(np.zeros((1, len(tree)), np.float32)))
    for group in range(tree.num_groups):
        np.testing.assert_allclose(conditional[0, list(tree.group_members(group))].sum(), 1.0, rtol=1e-6)
