"""Programs assembled from typed fragments of the language, for the property "check ok means it
runs" (tests/test_check_runs.py).

A program is a fixed header and parameter block, a menu of per-token values (unit and plain
vectors, rates, log-decays per head and per channel), and one or two states, each built from
fragments of the kinds the grammar allows in an update: multipliers of the state, right
factors (diagonal decays, delta / IPLR / DPLR / scaled-identity rank-one factors), writes
(outer products, dense terms, scaled and rank-two writes) and readouts (S @ q, dot, a read by
columns, the whole state, a read before the update). Every fragment is well typed where it is
used, so the generator explores structure, not syntax errors; the checker may still refuse a
combination (a coupling, a layout with no chunk form is not a refusal), and then it must say
why at a line.
"""

from __future__ import annotations

from hypothesis import strategies as st

HEADER = """mixer P(hidden_size = 16, num_heads = 2):
    H = num_heads
    d = hidden_size / H

    params:
        q_proj, k_proj, v_proj, r_proj, c_proj : linear(hidden_size -> H * d)
        a_proj, b_proj : linear(hidden_size -> H)
        o_proj : linear(H * d -> hidden_size)

    q = l2norm(q_proj(x) as [H, d])
    k = {key}
    v = v_proj(x) as [H, d]
    r = silu(r_proj(x) as [H, d])
    beta = {rate}
    g = {gate}
    gk = logsigmoid(c_proj(x) as [H, d]) / 4
"""

KEYS = ("l2norm(k_proj(x) as [H, d])", "k_proj(x) as [H, d]", "silu(k_proj(x) as [H, d])")
RATES = ("sigmoid(b_proj(x))", "2 * sigmoid(b_proj(x))", "tanh(b_proj(x))")
GATES = ("logsigmoid(a_proj(x))", "-softplus(a_proj(x))", "-exp(a_proj(x))")

# fragments of a matrix state's update S = scales * S @ factors + writes
SCALES = ("", "exp(g) * ", "exp(gk) * ", "0.9 * ", "beta * ", "exp(g) * exp(g) * ",
          "sigmoid(a_proj(x)) * ")
FACTORS = ("", " @ diag(exp(gk))", " @ (I - beta * outer(k, k))", " @ (I - beta * outer(q, k))",
           " @ (diag(exp(gk)) - outer(k, k * beta))", " @ (exp(g) * I - beta * outer(k, k))",
           " @ (I - beta * outer(k, k)) @ (I - beta * outer(q, q))",
           " @ diag(exp(gk)) @ (I - beta * outer(k, k))")
WRITES = ("outer(v, k)", "beta * outer(v, k)", "outer(v, k) + outer(r, q)",
          "exp(gk) * outer(v, k)", "outer(v * beta, k)", "outer(r, v) + outer(v, r)")
READS = ("S @ q", "S @ q + S @ r", "sum(q * S, over = -2)", "v * dot(S @ r, q)",
         "sum(S, over = -1)")

# fragments of a vector state [H, d] (a 2-D state: rows are heads)
VSCALES = ("", "exp(g) * ", "exp(gk) * ", "0.5 * ")
VWRITES = ("v", "beta * v", "(1 - exp(gk)) * r", "k")
VREADS = ("V * q", "V", "v * dot(V, q)")


@st.composite
def programs(draw) -> str:
    text = HEADER.format(key=draw(st.sampled_from(KEYS)), rate=draw(st.sampled_from(RATES)),
                         gate=draw(st.sampled_from(GATES)))
    before = draw(st.booleans())  # a read of S_{t-1} before the update
    body = ["    state S : [H, d, d]"]
    if before:
        body.append("    s0 = S @ q")
    scale = draw(st.sampled_from(SCALES))
    factor = draw(st.sampled_from(FACTORS))
    write = draw(st.sampled_from(WRITES))
    body.append(f"    S = {scale}S{factor} + {write}")
    read = draw(st.sampled_from(READS))
    out = f"{read} + s0" if before else read
    if draw(st.booleans()):  # a second state, a vector, fed by the first one's readout
        vscale = draw(st.sampled_from(VSCALES))
        vwrite = draw(st.sampled_from(VWRITES))
        body.append("    o1 = " + out)
        body.append("    state V : [H, d]")
        body.append(f"    V = {vscale}V + {vwrite} * sigmoid(o1)")
        out = draw(st.sampled_from(VREADS)) + " + o1"
    body.append(f"    o = {out}")
    body.append("    return o_proj(o as [H * d])")
    return text + "\n" + "\n".join(body) + "\n"
