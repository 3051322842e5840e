"""Emit a state's chunk plan (``linarch.codegen.plan``) as PyTorch statements.

Each operand of the plan is a product of IR values placed on the state's axes; it is emitted as
that product viewed on the state's full rank (``Emitter.place``), then laid out onto the chunk
algorithm's [heads, V, K] with the runtime's ``lay_out``. Positions are interleaved along time
when there are several; the readouts come back with ``unlay``. The same operands feed the fused
kernels of the Triton target (``operand`` / ``logs``).
"""

from __future__ import annotations

from linarch.codegen.emit import Ctx, Emitter
from linarch.codegen.plan import ChunkPlan, LogTerm, Product
from linarch.dsl.recurrence import DecayForm, Layout, Operand, Recurrence


class ChunkEmitter:
    """Operands of one recurrence as text; ``lines`` collects the statements they need."""

    def __init__(self, em: Emitter, rec: Recurrence, sizes: str) -> None:
        self.em = em
        self.rec = rec
        self.sizes = sizes  # the name of the tuple of the state's dims
        self.rank = rec.frame.rank

    # ------------------------------------------------------------------ values
    def value(self, op: Operand) -> str:
        text = self.em.expr(op.node, Ctx())
        placed = self.em.place(op.node, text, op.axes, self.rank, Ctx(), full=True)
        return f"(1 / {placed})" if op.inverse else placed

    def log(self, term: LogTerm) -> str:
        d = term.decay
        text = self.em.expr(d.value.node, Ctx())
        text = self.em.place(d.value.node, text, d.value.axes, self.rank, Ctx(), full=True)
        if d.form is not DecayForm.LOG:
            text = f"torch.log({text})"
        return f"(-{text})" if d.value.inverse else text

    def token(self, ops, logs=()) -> bool:
        return any(not o.static for o in ops) or any(not t.decay.static for t in logs)

    def product(self, p: Product) -> tuple[str, bool]:
        """(text of the product on the state's rank, whether it varies per token)."""
        # smallest factors first: a product of per-head scalars times a [.., K] vector keeps
        # one full-size temporary for autograd, not one per factor
        sized = [(len(o.axes), self.value(o)) for o in p.operands]
        if p.logs:
            sized.append((max(len(t.decay.value.axes) for t in p.logs),
                          f"torch.exp({' + '.join(self.log(t) for t in p.logs)})"))
        parts = [text for _, text in sorted(sized, key=lambda s: s[0])]
        text = " * ".join(parts) if parts else \
            f"torch.ones({(1,) * self.rank}, dtype=work_dtype, device=x.device)"
        if p.sign < 0:
            text = f"(-{text})"
        return text, self.token(p.operands, p.logs)

    def total(self, products: tuple[Product, ...]) -> tuple[str, bool]:
        texts = [self.product(p) for p in products]
        return " + ".join(t for t, _ in texts), any(tok for _, tok in texts)

    def laid(self, text: str, token: bool, groups: tuple[tuple[int, ...], ...]) -> str:
        out = f"lay_out({text}, {self.sizes}, {groups})"
        if not token:
            out += f".expand(B, T{', -1' * len(groups)})"
        return out

    def logs_total(self, logs: tuple[LogTerm, ...]) -> tuple[str, bool]:
        return " + ".join(self.log(t) for t in logs), any(not t.decay.static for t in logs)


def groups(rec: Recurrence, layout: Layout) -> tuple[tuple[int, ...], ...]:
    """(heads, V, K) axes of ``layout``, each in the state's axis order."""
    return tuple(tuple(sorted(g)) for g in rec.axes_of(layout))


def chunk_lines(em: Emitter, plan: ChunkPlan, state: str, sizes: str,
                reads: dict[int, str]) -> list[str]:
    """Statements computing every readout of the state and its final value with chunk_dplr."""
    rec = plan.rec
    ce = ChunkEmitter(em, rec, sizes)
    heads, v_axes, k_axes = groups(rec, plan.layout)
    hk, hv = (heads, k_axes), (heads, v_axes)
    per_channel = plan.per_channel
    g_groups = hk if per_channel else (heads,)
    out: list[str] = []
    n = len(plan.positions)
    any_log = any(p.logs for p in plan.positions)
    rank_one = plan.has_rank_one
    names: dict[str, list[str]] = {"q": [], "k": [], "v": [], "g": [], "a": [], "c": []}
    zeros: list[tuple[str, str]] = []  # (variable, operand whose shape it takes)

    def put(var: str, text: str) -> str:
        out.append(f"{var} = {text}.to(work_dtype)")
        return var

    for j, pos in enumerate(plan.positions):
        if pos.v:
            k_text, k_tok = ce.total(pos.k)
            v_text, v_tok = ce.total(pos.v)
            k = put(f"_k{j}", ce.laid(k_text, k_tok, hk))
            v = put(f"_v{j}", ce.laid(v_text, v_tok, hv))
        else:
            k, v = f"_k{j}", f"_v{j}"
            zeros += [(k, "k"), (v, "v")]
        if pos.read is not None:  # an empty query is all ones (a read of the entries)
            q_text, q_tok = ce.product(Product(1, pos.read.query))
            q = put(f"_q{j}", ce.laid(q_text, q_tok, hk))
        else:
            q = f"_q{j}"
            zeros.append((q, "k"))
        names["q"].append(q)
        names["k"].append(k)
        names["v"].append(v)
        if pos.logs:
            text, tok = ce.logs_total(pos.logs)
            names["g"].append(put(f"_g{j}", ce.laid(text, tok, g_groups)))
        elif any_log:
            names["g"].append(f"_g{j}")
            zeros.append((f"_g{j}", "g"))
        if pos.a is not None:
            a_text, a_tok = ce.product(pos.a)
            names["a"].append(put(f"_a{j}", ce.laid(a_text, a_tok, hk)))
            if pos.c is not None and len(pos.k) == 1 and pos.c == pos.k[0] and pos.v:
                names["c"].append(k)  # the same tensor: chunk_dplr merges the two writes
            else:
                c_text, c_tok = ce.product(pos.c)
                names["c"].append(put(f"_c{j}", ce.laid(c_text, c_tok, hk)))
        elif rank_one:
            names["a"].append(f"_a{j}")
            names["c"].append(f"_c{j}")
            zeros += [(f"_a{j}", "k"), (f"_c{j}", "k")]
    reference = {"k": _first(names["k"], zeros), "v": _first(names["v"], zeros),
                 "g": _first(names["g"], zeros)}
    for var, like in zeros:
        out.append(f"{var} = torch.zeros_like({reference[like]})")
    out.append("if mask is not None:")
    extra = ", None" if per_channel else ""
    for j in range(n):
        if names["g"]:
            out.append(f"    {names['g'][j]} = {names['g'][j]} * mask.to(work_dtype)[..., None"
                       f"{extra}]")
        out.append(f"    {names['v'][j]} = {names['v'][j]} * mask.to(work_dtype)[..., None, None]")
        if names["a"]:
            out.append(f"    {names['a'][j]} = {names['a'][j]} * mask.to(work_dtype)[..., None, "
                       "None]")
    if n > 1:
        for key in names:
            if not names[key]:
                continue
            if key == "c" and names["c"] == names["k"]:
                out.append("_ci = _ki")
                continue
            out.append(f"_{key}i = interleave([{', '.join(names[key])}])")
        args = {key: f"_{key}i" for key in names if names[key]}
    else:
        args = {key: names[key][0] for key in names if names[key]}
    kw = "".join(f", {key}={args[key]}" for key in ("g", "a", "c") if key in args)
    out.append(f"_o, _h = chunk_dplr({args['q']}, {args['k']}, {args['v']}{kw}, "
               f"initial_state=lay_out({state}, {sizes}, {(heads, v_axes, k_axes)}), "
               "chunk_size=self.chunk_size)")
    out.append(f"{state} = unlay(_h, {sizes}, {(heads, v_axes, k_axes)})")
    for j, pos in enumerate(plan.positions):
        if pos.read is None:
            continue
        o = f"_o[:, {j}::{n}]" if n > 1 else "_o"
        out.append(f"{reads[pos.read.node]} = unlay({o}, {sizes}, {hv})")
    return out


def _first(names: list[str], zeros: list[tuple[str, str]]) -> str | None:
    blank = {var for var, _ in zeros}
    return next((n for n in names if n not in blank), None)
