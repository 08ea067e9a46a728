"""The error raised for malformed dataset files."""


class DatasetError(ValueError):
    """A dataset file or entry is malformed, missing, or unsafe.

    The message always starts with the file (and, where there is one, the entry inside it)
    and then says what is wrong, e.g.
    ``instances.json: annotations[3] (id 17): bbox has negative width -2.0``.

    Args:
        path: the file at fault (str or path-like).
        problem: what is wrong, in words.
        entry: where inside the file (e.g. ``"annotations[3] (id 17)"``, ``"line 4"``), or None.

    Example:
        >>> try:
        ...     raise DatasetError("a.xml", "missing <bndbox>", entry="object[0]")
        ... except ValueError as e:
        ...     print(e)
        a.xml: object[0]: missing <bndbox>
    """

    def __init__(self, path, problem, entry=None):
        self.path = str(path)
        self.entry = entry
        self.problem = problem
        where = self.path if entry is None else f"{self.path}: {entry}"
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):
        return (type(self), (self.path, self.problem, self.entry))
