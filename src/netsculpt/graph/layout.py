"""Channel layouts: how the indices of one tensor dimension are made of coupled channel spaces.

An *atom* is a run of channel indices. Atoms that must be pruned together (index ``i`` of one is
index ``i`` of the other) are merged with union-find into a *class*. A dimension's *layout* is a
tuple of segments, each either an atom or a ``Prod(outer, inner)``: ``outer`` repetitions of the
layout ``inner`` (row-major), which is what a ``view`` that splits ``C`` into ``(H, D)`` produces.

Classes can be refined after the fact (split at an offset, or factored into a product) when a
later op needs a finer view; every layout that mentions them sees the refinement, because layouts
are always read through :meth:`Atoms.expand`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


class Incompatible(Exception):
    """Two layouts cannot be aligned index-for-index (the caller protects both instead)."""


@dataclass(frozen=True)
class Prod:
    outer: int
    inner: tuple

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"P({self.outer}x{self.inner})"


Layout = tuple  # tuple[int | Prod, ...]


class Atoms:
    """Union-find over channel atoms, with refinement (split / factor) of whole classes."""

    def __init__(self) -> None:
        self.size: list[int] = []
        self.parent: list[int] = []
        self.refined: dict[int, Layout] = {}
        self.protected: dict[int, str] = {}
        self.flags: dict[int, set[str]] = {}

    # -- atoms ---------------------------------------------------------------------------------
    def new(self, size: int, protect: str | None = None, flags: tuple[str, ...] = ()) -> int:
        a = len(self.size)
        self.size.append(int(size))
        self.parent.append(a)
        if protect:
            self.protected[a] = protect
        if flags:
            self.flags[a] = set(flags)
        return a

    def find(self, a: int) -> int:
        p = self.parent
        root = a
        while p[root] != root:
            root = p[root]
        while p[a] != root:
            p[a], a = root, p[a]
        return root

    def _union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        assert ra not in self.refined and rb not in self.refined
        if self.size[ra] != self.size[rb]:
            raise Incompatible(f"atom sizes {self.size[ra]} != {self.size[rb]}")
        self.parent[rb] = ra
        if rb in self.protected and ra not in self.protected:
            self.protected[ra] = self.protected[rb]
        if rb in self.flags:
            self.flags.setdefault(ra, set()).update(self.flags.pop(rb))

    def _refine(self, a: int, layout: Layout) -> None:
        r = self.find(a)
        assert r not in self.refined
        self.refined[r] = layout
        reason = self.protected.get(r)
        flags = self.flags.get(r)
        if reason or flags:
            for leaf in self.leaves(layout):
                if reason:
                    self.protected.setdefault(leaf, reason)
                if flags:
                    self.flags.setdefault(leaf, set()).update(flags)

    def split(self, a: int, k: int) -> tuple[int, int]:
        """Split the class of unrefined atom ``a`` at offset ``k``."""
        n = self.size[a]
        a1, a2 = self.new(k), self.new(n - k)
        self._refine(a, (a1, a2))
        return a1, a2

    # -- layouts -------------------------------------------------------------------------------
    def seg_size(self, s) -> int:
        if isinstance(s, Prod):
            return self.size[s.outer] * self.layout_size(s.inner)
        return self.size[s]

    def layout_size(self, layout: Layout) -> int:
        return sum(self.seg_size(s) for s in layout)

    def product(self, l1: Layout, l2: Layout) -> Layout:
        """Row-major product of two layouts (the layout of a view that merges two dims)."""
        if not l2 or self.layout_size(l2) == 1:
            return tuple(l1)
        if self.layout_size(l1) == 1:
            return tuple(l2)
        out = []
        for s in self.expand(l1):
            if isinstance(s, Prod):
                out.append(Prod(s.outer, self.product(s.inner, l2)))
            else:
                out.append(Prod(s, tuple(l2)))
        return tuple(out)

    def expand(self, layout: Layout) -> Layout:
        """The layout with every atom replaced by its class root and refinements applied."""
        out: list = []
        for s in layout:
            if isinstance(s, Prod):
                inner = self.expand(s.inner)
                r = self.find(s.outer)
                if r in self.refined:
                    for t in self.expand(self.refined[r]):
                        if isinstance(t, Prod):
                            out.append(Prod(t.outer, self.expand(self.product(t.inner, inner))))
                        else:
                            out.append(Prod(t, inner))
                else:
                    out.append(Prod(r, inner))
            else:
                r = self.find(s)
                if r in self.refined:
                    out.extend(self.expand(self.refined[r]))
                else:
                    out.append(r)
        return tuple(out)

    def leaves(self, layout: Layout) -> list[int]:
        """Every class root that occurs in ``layout`` (outer and inner atoms alike)."""
        out: list[int] = []
        for s in self.expand(layout):
            if isinstance(s, Prod):
                out.append(s.outer)
                out.extend(self.leaves(s.inner))
            else:
                out.append(s)
        return out

    def protect(self, layout: Layout, reason: str) -> None:
        for leaf in self.leaves(layout):
            self.protected.setdefault(leaf, reason)

    def flag(self, layout: Layout, flag: str) -> None:
        for leaf in self.leaves(layout):
            self.flags.setdefault(leaf, set()).add(flag)

    # -- coupling ------------------------------------------------------------------------------
    def unify(self, l1: Layout, l2: Layout) -> None:
        """Couple two layouts index-for-index; raises :class:`Incompatible` if impossible."""
        if self.layout_size(l1) != self.layout_size(l2):
            raise Incompatible(f"layout sizes {self.layout_size(l1)} != {self.layout_size(l2)}")
        a, b = deque(self.expand(l1)), deque(self.expand(l2))
        while a and b:
            x, y = self._next(a), self._next(b)
            sx, sy = self.seg_size(x), self.seg_size(y)
            if isinstance(x, Prod) and not isinstance(y, Prod):
                x, y, a, b, sx, sy = y, x, b, a, sy, sx
            if not isinstance(x, Prod) and not isinstance(y, Prod):
                if sx == sy:
                    self._union(x, y)
                elif sx > sy:
                    x1, x2 = self.split(x, sy)
                    self._union(x1, y)
                    a.appendleft(x2)
                else:
                    y1, y2 = self.split(y, sx)
                    self._union(x, y1)
                    b.appendleft(y2)
            elif not isinstance(x, Prod):  # atom x against Prod y
                m = self.layout_size(y.inner)
                if sx >= sy:
                    if sx > sy:
                        x, x2 = self.split(x, sy)
                        a.appendleft(x2)
                    o, i = self.new(self.size[y.outer]), self.new(m)
                    self._refine(x, (Prod(o, (i,)),))
                    self._union(o, y.outer)
                    self.unify((i,), y.inner)
                else:
                    if sx % m:
                        raise Incompatible("a cut falls inside a product's inner block")
                    o1, o2 = self.split(y.outer, sx // m)
                    b.appendleft(Prod(o2, y.inner))
                    b.appendleft(Prod(o1, y.inner))
                    a.appendleft(x)
            else:  # Prod against Prod
                m1, m2 = self.layout_size(x.inner), self.layout_size(y.inner)
                if m1 != m2:
                    x, y = self._regroup(x, y, m1, m2)
                    a.appendleft(x)
                    b.appendleft(y)
                    continue
                n1, n2 = self.size[x.outer], self.size[y.outer]
                if n1 > n2:
                    o1, o2 = self.split(x.outer, n2)
                    a.appendleft(Prod(o2, x.inner))
                    x = Prod(o1, x.inner)
                elif n2 > n1:
                    o1, o2 = self.split(y.outer, n1)
                    b.appendleft(Prod(o2, y.inner))
                    y = Prod(o1, y.inner)
                self._union(x.outer, y.outer)
                self.unify(x.inner, y.inner)
        if a or b:
            raise Incompatible("layouts of different lengths")

    def _next(self, q: deque):
        """Pop the next segment, re-expanded (its class may have been refined while aligning)."""
        e = self.expand((q.popleft(),))
        for t in reversed(e[1:]):
            q.appendleft(t)
        return e[0]

    def _regroup(self, x: Prod, y: Prod, m1: int, m2: int) -> tuple[Prod, Prod]:
        """Make two products' inner blocks the same size by factoring the larger inner."""
        if m1 > m2:
            y2, x2 = self._regroup(y, x, m2, m1)
            return x2, y2
        if m2 % m1:
            raise Incompatible("products with incommensurate inner blocks")
        # y = outer_y x inner_y, inner_y = X x Y with |Y| = m1  =>  y = (outer_y x X) x Y
        outer_x, inner_y = self.factor(y.inner, m1)
        if len(outer_x) != 1 or isinstance(outer_x[0], Prod):
            raise Incompatible("cannot regroup a product")
        k = self.size[outer_x[0]]
        # x.outer (n1) must factor as (n1/k, k) to align with (outer_y, X)
        n1 = self.size[x.outer]
        if n1 % k:
            raise Incompatible("cannot regroup a product")
        xo, xi = self.new(n1 // k), self.new(k)
        self._refine(x.outer, (Prod(xo, (xi,)),))
        self._union(xi, outer_x[0])
        return Prod(xo, (Prod(xi, x.inner),)), Prod(y.outer, (Prod(outer_x[0], inner_y),))

    def factor(self, layout: Layout, m: int) -> tuple[Layout, Layout]:
        """Write ``layout`` as ``product(outer, inner)`` with ``|inner| == m`` (refining classes)."""
        total = self.layout_size(layout)
        if m == total:
            return (), tuple(layout)
        if m == 1:
            return tuple(layout), ()
        if total % m:
            raise Incompatible(f"{total} is not a multiple of {m}")
        outers: list = []
        inner: Layout | None = None
        queue = deque(self.expand(layout))
        while queue:
            # re-expanded when popped: a class met twice is refined the first time
            s = self._next(queue)
            n = self.seg_size(s)
            if n % m:
                raise Incompatible(f"segment of {n} channels does not split into blocks of {m}")
            if isinstance(s, Prod):
                mi = self.layout_size(s.inner)
                if mi == m:
                    o, i = (s.outer,), s.inner
                elif mi > m:
                    xo, xi = self.factor(s.inner, m)
                    o, i = self.product((s.outer,), xo), xi
                else:
                    if m % mi or self.size[s.outer] % (m // mi):
                        raise Incompatible("product does not factor")
                    k = m // mi
                    o1, o2 = self.new(self.size[s.outer] // k), self.new(k)
                    self._refine(s.outer, (Prod(o1, (o2,)),))
                    o, i = (o1,), (Prod(o2, s.inner),)
            else:
                if n == m:
                    o, i = (self.new(1),), (s,)
                else:
                    a_o, a_i = self.new(n // m), self.new(m)
                    self._refine(s, (Prod(a_o, (a_i,)),))
                    o, i = (a_o,), (a_i,)
            outers.extend(o)
            if inner is None:
                inner = i
            else:
                self.unify(inner, i)
        return tuple(outers), tuple(inner or ())

    # -- reading -------------------------------------------------------------------------------
    def index_map(self, layout: Layout, cls: int) -> np.ndarray:
        """For each position of the dim: its index within class ``cls``, or -1."""
        parts = []
        for s in self.expand(layout):
            if isinstance(s, Prod):
                m = self.layout_size(s.inner)
                n = self.size[s.outer]
                if s.outer == cls:
                    parts.append(np.repeat(np.arange(n), m))
                else:
                    parts.append(np.tile(self.index_map(s.inner, cls), n))
            elif s == cls:
                parts.append(np.arange(self.size[s]))
            else:
                parts.append(np.full(self.size[s], -1))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
