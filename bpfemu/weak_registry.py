"""Objects held weakly with no callback, so that freeing one runs no Python code of ours.

weakref.WeakSet (and weakref.WeakMethod) drop a dead entry from a callback written in
Python, run when the object is freed: at any moment the cyclic garbage collector runs, in
the middle of whatever the thread was doing. An asynchronous exception that lands there (a
signal handler's KeyboardInterrupt, one injected with PyThreadState_SetAsyncExc) cannot
leave a weakref callback: Python prints it as "unraisable" and drops it, so the interrupt
is lost. A plain weakref.ref has no callback; dead entries are dropped here when the
registry grows instead.
"""
import itertools
import weakref


class WeakRegistry:
    """A set of objects held weakly: add(obj), and iteration over the live ones (in the order
    added). Safe to add to from several threads: entries have keys of their own that are
    never reused, so a prune never drops an entry added meanwhile."""

    __slots__ = ("_refs", "_keys", "_prune_at")

    def __init__(self):
        self._refs: dict = {}                   # key -> weakref.ref(obj), with no callback
        self._keys = itertools.count()
        self._prune_at = 16

    def add(self, obj) -> None:
        refs = self._refs
        refs[next(self._keys)] = weakref.ref(obj)
        if len(refs) >= self._prune_at:         # dead entries go as the registry doubles
            for key, ref in list(refs.items()):
                if ref() is None:
                    refs.pop(key, None)
            self._prune_at = 2 * len(refs) + 16

    def __iter__(self):
        live = [ref() for ref in list(self._refs.values())]
        return iter([obj for obj in live if obj is not None])

    def __len__(self) -> int:
        return sum(1 for _ in self)


class WeakBoundMethod:
    """A bound method held weakly, with no callback (unlike weakref.WeakMethod): calling
    it calls the method if its object is alive and returns True, else returns False."""

    __slots__ = ("_obj", "_func")

    def __init__(self, method):
        self._obj = weakref.ref(method.__self__)
        self._func = method.__func__

    def __call__(self) -> bool:
        obj = self._obj()
        if obj is None:
            return False
        self._func(obj)
        return True
