"""The search: Wing & Gong's linearizability check with Lowe's memoisation.

The history of one key becomes a doubly linked list of call and return
entries in real-time order. The search walks it from the head: a call entry
whose operation can take effect in the current state is *lifted* (removed with
its return entry) and the walk restarts; reaching a return entry means the
operation it closes had to take effect by then and could not, so the search
backtracks, puts the last lifted operation back, and tries the next candidate.
A cache of (linearized set, state) pairs that already failed cuts repeated
work (Lowe's just-in-time linearization; Porcupine's implementation).

Three refinements keep it fast in pure Python:

- An indeterminate operation has no return entry: it never forces anything,
  so it lives in a second list and is tried only after every determinate
  candidate failed, and only where it changes the state. One that would
  change nothing can always be left out (or put last), so it never is.
- A read-only operation that can take effect now is taken greedily: reading
  earlier changes no state and releases no constraint later, so if the search
  fails after it, it fails without it too, and backtracking skips past it.
- The cache also prunes by dominance: a configuration is skipped when one
  with the same determinate operations and state but a subset of its
  indeterminate ones was seen, since leaving an indeterminate operation out
  is always allowed. (An indeterminate write that a later write overwrote
  unread is pruned this way.)
- The walk is a generator that yields every ``slice_steps`` steps, so the
  caller can interleave keys, stop at the first failing one, and enforce a
  time limit without signals or threads.

The list is two int arrays (``nxt``/``prv``), so a lift or unlift is four
list stores. The linearized set is kept small: determinate operations are
numbered in call order and must all be linearized by the time the search
passes their return, so the set is "everything below ``low``" plus a window
of a few bits above it (an int); indeterminate ones have their own bitset.
A cache entry is then a few small ints and a state, not an n-bit int: a hard
search of 10,000 operations stays in memory.
"""

from __future__ import annotations

from collections.abc import Generator, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from cairn.lab._history import Call
from cairn.lab._models import Model

__all__ = ["DeadEnd", "Outcome", "search"]

# Frame kinds on the backtracking stack.
_DET = 0  # a determinate operation: on backtrack, try the next candidate
_GREEDY = 1  # a read-only one taken greedily: on backtrack, keep backtracking
_IND = 2  # an indeterminate one: on backtrack, resume among the indeterminate

_FAR = 1 << 62  # past every rank: the tail sentinel's position


@dataclass(frozen=True, slots=True)
class DeadEnd:
    """Where the search got stuck with the longest linearized prefix.

    ``blocker`` returned while it could not be linearized; ``window`` holds the
    operations that were candidates then (all concurrent with the blocker,
    which is among them); ``prefix`` the last operations linearized before,
    oldest first; ``state`` the model state after them.
    """

    linearized: int
    state: Hashable
    prefix: tuple[Call, ...]
    window: tuple[Call, ...]
    blocker: Call


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a search of one key ended."""

    linearizable: bool
    states: int
    dead_end: DeadEnd | None


def search(
    calls: Sequence[Call], model: Model, *, slice_steps: int = 512, prefix_len: int = 3
) -> Generator[None, None, Outcome]:
    """Search one key's operations for a linearization; yield every ``slice_steps`` steps."""
    step = model.step
    read_only = model.read_only
    # An indeterminate read constrains nothing: it may return anything, or never have run.
    ops = sorted(
        (c for c in calls if not (c.indeterminate and c.f in read_only)), key=lambda c: c.call
    )
    n = len(ops)
    head, ind_head, tail = 2 * n, 2 * n + 1, 2 * n + 2
    # Entry e < n is the call entry of ops[e]; n + e its return entry.
    nxt = [tail] * (2 * n + 3)
    prv = [head] * (2 * n + 3)
    pos = [0] * (2 * n + 3)
    pos[tail] = _FAR
    kinds = [_DET] * n
    # Bit numbers: determinate ops count 0, 1, ... in call order, so the
    # linearized ones are "all below low" plus a few above it, kept as a small
    # window int; indeterminate ops have their own small bitset.
    bit = [0] * n
    n_det = n_ind = 0
    events: list[tuple[int, int]] = []
    last_ind = ind_head
    for i, c in enumerate(ops):
        pos[i] = c.call
        if c.indeterminate:
            kinds[i] = _IND
            bit[i] = n_ind
            n_ind += 1
            nxt[last_ind] = i
            prv[i] = last_ind
            last_ind = i
        else:
            if c.f in read_only:
                kinds[i] = _GREEDY
            bit[i] = n_det
            n_det += 1
            pos[n + i] = int(c.ret)
            events.append((c.call, i))
            events.append((pos[n + i], n + i))
    nxt[last_ind] = tail
    events.sort()
    last = head
    for _, e in events:
        nxt[last] = e
        prv[e] = last
        last = e
    nxt[last] = tail

    remaining = n_det
    if not remaining:
        return Outcome(True, 0, None)

    state = model.init()
    low = 0  # every determinate op numbered below low is linearized
    win = 0  # bit j: determinate op low + j is linearized
    ind = 0  # bit j: indeterminate op j is linearized
    stack: list[tuple[int, Hashable, int, int, int, int, int]] = []
    push = stack.append
    pop = stack.pop
    # (low, win, state) -> the indeterminate sets seen with it. A configuration
    # is skipped if one with a subset of its indeterminate ops is there: that
    # one had every option this one has (the extra ops are optional), and it
    # failed or is being explored above.
    # One set is kept as a bare int, more as a list: most keys never need two.
    cache: dict[tuple[int, int, Hashable], Any] = {}
    lookup = cache.get
    explored = 0
    best = -1
    dead_end: DeadEnd | None = None
    budget = slice_steps
    e = nxt[head]
    ind_from = ind_head

    while True:
        # Phase 1: the determinate candidates, up to the first return entry.
        stuck = False
        while e < n:
            ok, new = step(state, ops[e])
            if ok:
                j = bit[e] - low
                w = win | (1 << j)
                if j:
                    nlow = low
                else:
                    j = (~w & (w + 1)).bit_length() - 1  # trailing ones
                    nlow = low + j
                    w >>= j
                # The memo check below stands twice, inlined on purpose: a call
                # per search step would be the inner loop's largest cost.
                seen = (nlow, w, new)
                known = lookup(seen)
                fresh = True
                if known is None:
                    cache[seen] = ind
                elif known.__class__ is int:
                    if known & ~ind:
                        cache[seen] = [known, ind]
                    else:
                        fresh = False
                else:
                    mask = ~ind
                    for other in known:
                        if not other & mask:
                            fresh = False
                            break
                    else:
                        known.append(ind)
                if fresh:
                    explored += 1
                    push((e, state, kinds[e], 0, low, win, ind))
                    p = prv[e]
                    q = nxt[e]
                    nxt[p] = q
                    prv[q] = p
                    r = n + e
                    p = prv[r]
                    q = nxt[r]
                    nxt[p] = q
                    prv[q] = p
                    state = new
                    low = nlow
                    win = w
                    remaining -= 1
                    if not remaining:
                        return Outcome(True, explored, None)
                    budget -= 1
                    if not budget:
                        yield
                        budget = slice_steps
                    e = nxt[head]
                    ind_from = ind_head
                    continue
                if kinds[e] == _GREEDY:
                    stuck = True
                    break
            e = nxt[e]

        if not stuck:
            # Phase 2: e is the first return entry; try the indeterminate
            # operations invoked before it, where they change the state.
            ret_entry = e
            limit = pos[e]
            i = nxt[ind_from]
            while pos[i] <= limit:
                ok, new = step(state, ops[i])
                if ok and new != state:
                    w = ind | (1 << bit[i])
                    # The same memo check as in phase 1, inlined for the same reason.
                    seen = (low, win, new)
                    known = lookup(seen)
                    fresh = True
                    if known is None:
                        cache[seen] = w
                    elif known.__class__ is int:
                        if known & ~w:
                            cache[seen] = [known, w]
                        else:
                            fresh = False
                    else:
                        mask = ~w
                        for other in known:
                            if not other & mask:
                                fresh = False
                                break
                        else:
                            known.append(w)
                    if fresh:
                        explored += 1
                        push((i, state, _IND, ret_entry, low, win, ind))
                        p = prv[i]
                        q = nxt[i]
                        nxt[p] = q
                        prv[q] = p
                        state = new
                        ind = w
                        break
                i = nxt[i]
            else:
                i = -1
            if i >= 0:
                budget -= 1
                if not budget:
                    yield
                    budget = slice_steps
                e = nxt[head]
                ind_from = ind_head
                continue

        # A dead end: remember the deepest, then backtrack.
        if n_det - remaining > best:
            best = n_det - remaining
            dead_end = _dead_end(ops, nxt, pos, n, state, stack, best, prefix_len)
        while True:
            if not stack:
                return Outcome(False, explored, dead_end)
            e, state, kind, ret_entry, low, win, ind = pop()
            if kind == _IND:
                p = prv[e]
                q = nxt[e]
                nxt[p] = e
                prv[q] = e
                ind_from = e
                e = ret_entry
                break
            r = n + e
            p = prv[r]
            q = nxt[r]
            nxt[p] = r
            prv[q] = r
            p = prv[e]
            q = nxt[e]
            nxt[p] = e
            prv[q] = e
            remaining += 1
            if kind == _DET:
                e = nxt[e]
                ind_from = ind_head
                break
            # _GREEDY: if the search failed after the read, it fails without it.
        budget -= 1
        if not budget:
            yield
            budget = slice_steps


def _dead_end(
    ops: list[Call],
    nxt: list[int],
    pos: list[int],
    n: int,
    state: Hashable,
    stack: list[tuple[int, Hashable, int, int, int, int, int]],
    linearized: int,
    prefix_len: int,
) -> DeadEnd:
    # The candidates: determinate calls before the first return entry (the
    # blocker's call among them), then unplaced indeterminate ones before it.
    window: list[Call] = []
    e = nxt[2 * n]
    while e < n:
        window.append(ops[e])
        e = nxt[e]
    blocker = ops[e - n]
    limit = pos[e]
    i = nxt[2 * n + 1]
    while pos[i] <= limit:
        window.append(ops[i])
        i = nxt[i]
    window.sort(key=lambda c: c.call)
    prefix = tuple(ops[frame[0]] for frame in stack[-prefix_len:]) if prefix_len else ()
    return DeadEnd(linearized, state, prefix, tuple(window), blocker)
