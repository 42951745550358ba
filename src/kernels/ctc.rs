//! `shaders/ctc.wgsl`: the CTC loss's per-sequence loss and its gradient in the
//! log-probabilities; and the alpha recursion and the beta recursion with the gradient
//! (`beta_grad`), whose WGSL is written out here.
//!
//! A recursion runs one workgroup per sequence. Each thread keeps `P` consecutive extended
//! labels in registers from one time step to the next and trades only its two edge values with
//! its neighbour through workgroup memory, so a step costs one barrier, the log-probabilities of
//! its labels, and no read of the previous step from memory. On the software adapters, where
//! every load whose address differs between lanes is a gather, that is what makes the recursion
//! cheap: the version that read `alpha[t - 1]` back from a storage buffer spent most of its time
//! in those loads. `P` must be a compile-time constant for the registers to stay registers, so
//! the step is written out once per label (`MAX_P` copies, those past `P` folded away).

use std::fmt::Write;

use bytemuck::{Pod, Zeroable};

use super::source::{cached, shader};
use crate::gpu::spec::{Binding, EntrySpec, KernelSpec, LoopBound, Reads};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(crate) struct Params {
    /// N: the sequences of the whole input.
    pub(crate) batch: u32,
    pub(crate) classes: u32,
    pub(crate) blank: u32,
    /// The row stride of alpha and beta: 2 × (the chunk's longest target) + 1.
    pub(crate) sp: u32,
    /// The time steps alpha and beta hold (T).
    pub(crate) steps: u32,
    /// This time chunk, `t0 .. t1`.
    pub(crate) t0: u32,
    pub(crate) t1: u32,
    /// This sequence chunk, `n0 .. n0 + seqs` (alpha and beta hold it).
    pub(crate) n0: u32,
    pub(crate) seqs: u32,
    /// Write the recursion's every step to its table (the gradient needs them), not only the
    /// steps later dispatches read: a chunk's last step and each sequence's final one.
    pub(crate) store_all: u32,
    /// The first step of the bound rows of lp and dlp: t0, or 0 where they are bound whole.
    pub(crate) tb: u32,
    /// `grad_fill`'s rows (t, n) a workgroup.
    pub(crate) rows_per: u32,
}
const _: () = assert!(size_of::<Params>() == 48);

/// The log-probabilities of a time chunk (f32), staged in a texture on the software adapters.
pub const LP: Binding = Binding::staged("lp", 1);
/// The targets (i32), padded rows or concatenated.
pub const TARGETS: Binding = Binding::read("targets", 2);
/// Per sequence: input length, target length, first target, divisor (f32 bits).
pub const SEQS: Binding = Binding::read("seqs", 3);
/// log alpha and log beta of a sequence chunk, `(seqs, T, sp)`.
pub const ALPHA: Binding = Binding::read_write("alpha", 4);
pub const BETA: Binding = Binding::read_write("beta", 5);
/// Each sequence's negative log-likelihood (f32 bits; +inf where impossible).
pub const NLL: Binding = Binding::read_write("nll", 6);
/// Each sequence's loss: the nll over its divisor.
pub const LOSS: Binding = Binding::read_write("loss", 7);
/// The upstream gradient: one per sequence, or one value.
pub const G: Binding = Binding::read("g", 8);
/// The gradient in the log-probabilities of a time chunk (f32 bits).
pub const DLP: Binding = Binding::read_write("dlp", 9);
/// The first target outside `[0, C)`.
pub const STATUS: Binding = Binding::read_write("status", 10);
/// Per sequence and extended label: its class (bit 31 set at its class's first position) and
/// the next position of the same class.
pub const CHAINS: Binding = Binding::read_write("chains", 11);
/// Per sequence and extended label: alpha + beta of the step `beta_grad` is at (odd labels of
/// a class that may repeat; the class's first label sums its chain from here).
pub const ODD: Binding = Binding::read_write("odd", 12);
/// The alpha table again, for `beta_grad` to read four labels at a time (staged in a texture on
/// the software adapters; rows of the table are whole texels).
pub const ALPHA_IN: Binding = Binding::staged("alpha_in", 14);
/// Per row (t, n) of a time chunk: what `grad_fill` writes there, and the sequence's scale.
pub const SCALES: Binding = Binding::read_write("scales", 13);

/// The extents the loops grow with: the time steps of a dispatch and the extended labels.
pub(crate) const EXTENTS: &[&str] = &["steps", "positions"];
/// Threads per workgroup of the entries other than the recursions.
pub(crate) const WG: u64 = 64;
/// The most extended labels one thread of a recursion keeps.
pub(crate) const MAX_P: u32 = 32;
/// The largest workgroup of a recursion.
pub(crate) const MAX_WG: u64 = 1024;
/// Workgroup memory a recursion takes per thread: its edge exchange (four floats) and, in
/// `beta_grad`, its partial sum of the blank's terms (one).
pub(crate) const EDGE_BYTES: u64 = 20;

/// The recursions' layout for `positions` extended labels on a device whose workgroups take
/// up to `max_wg` threads: (threads a workgroup, labels a thread). 64 threads of 4 or 8 labels
/// while that holds them; then 8 labels on up to 256 threads; then up to `MAX_P` on up to
/// `max_wg`. `None` past `max_wg · MAX_P`.
pub(crate) fn recursion_layout(positions: u64, max_wg: u64) -> Option<(u32, u32)> {
    let per = |threads: u64| positions.div_ceil(threads).next_power_of_two().max(4);
    let threads = |p: u64| positions.div_ceil(p).next_power_of_two().max(64);
    let (wg, p) = if per(64) <= 8 {
        (64, per(64))
    } else if threads(8) <= 256.min(max_wg) {
        (threads(8), 8)
    } else {
        let wg = max_wg.min(MAX_WG);
        (wg, per(wg))
    };
    (p <= MAX_P as u64).then_some((wg as u32, p as u32))
}

/// `alpha_steps`: one loop over the steps, no loop inside a step.
pub(crate) fn step_trips(steps: u64, _positions: u64) -> u64 {
    steps + 1
}

/// `beta_grad`: each step also folds the workgroup's blank partials (one per thread) and walks
/// the chains of the label classes (at most the targets' labels in all).
pub(crate) fn grad_step_trips(steps: u64, positions: u64, threads: u64) -> u64 {
    steps * (threads + positions / 2 + 2) + 1
}

/// `grad_fill`: `rows` rows a workgroup, each a loop over the classes, WG at a time.
pub(crate) fn fill_trips(rows: u64, classes: u64) -> u64 {
    rows * (classes.div_ceil(WG) + 1) + 1
}

/// The extents of `grad_fill`'s loop bound.
pub(crate) const FILL_EXTENTS: &[&str] = &["rows", "classes"];

/// The extents of `beta_grad`'s loop bound.
pub(crate) const GRAD_EXTENTS: &[&str] = &["steps", "positions", "threads"];
const STEPS: LoopBound = LoopBound { over: EXTENTS, rule: |e| step_trips(e[0], e[1]) };
/// sequence_loss loops over the targets, class_chains twice over the positions.
const POSITIONS: LoopBound = LoopBound { over: EXTENTS, rule: |e| 2 * e[1] + 1 };

pub static KERNEL: KernelSpec = KernelSpec {
    name: "ctc",
    entries: &[
        EntrySpec { name: "alpha_steps", bindings: &[LP, TARGETS, SEQS, ALPHA], trips: STEPS },
        EntrySpec {
            name: "beta_grad",
            bindings: &[LP, TARGETS, SEQS, BETA, NLL, G, DLP, CHAINS, ODD, ALPHA_IN],
            trips: LoopBound { over: GRAD_EXTENTS, rule: |e| grad_step_trips(e[0], e[1], e[2]) },
        },
        EntrySpec {
            name: "sequence_loss",
            bindings: &[TARGETS, SEQS, ALPHA, NLL, LOSS, STATUS],
            trips: POSITIONS,
        },
        EntrySpec { name: "row_scales", bindings: &[SEQS, NLL, G, SCALES], trips: LoopBound::fixed(|_| 0) },
        EntrySpec {
            name: "grad_fill",
            bindings: &[LP, SCALES, DLP],
            trips: LoopBound { over: FILL_EXTENTS, rule: |e| fill_trips(e[0], e[1]) },
        },
        EntrySpec { name: "class_chains", bindings: &[TARGETS, SEQS, CHAINS], trips: POSITIONS },
    ],
    uniform_size: size_of::<Params>(),
    source: |reads: Reads| cached(&KERNEL, reads, body),
};

fn body() -> String {
    let mut s = String::from(shader!("ctc.wgsl"));
    recursion(&mut s, Direction::Alpha);
    recursion(&mut s, Direction::Beta);
    s
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Forward in time, each label from itself and the one or two below it.
    Alpha,
    /// Backward in time, each label from itself and the one or two above it.
    Beta,
}

/// Appends `alpha_steps` or `beta_grad`: thread `lid` of sequence j's workgroup holds labels
/// `s = lid·P + u` (u < P) in `v{u}`, the recursion one step back (alpha: step t − 1; beta:
/// t + 1). Each step reads the neighbour's two edge values `e` (alpha: the thread below's last
/// two, labels s0 − 2 and s0 − 1; beta: the thread above's first two, s0 + P and s0 + P + 1),
/// computes the step into `w{u}`, stores what later dispatches read, and publishes its own edge
/// values, double buffered by the step's parity so that one barrier a step suffices.
fn recursion(s: &mut String, dir: Direction) {
    let alpha = dir == Direction::Alpha;
    let (name, table) = if alpha { ("alpha_steps", "alpha") } else { ("beta_grad", "beta") };
    let _ = write!(
        s,
        "
@compute @workgroup_size(WG)
fn {name}(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {{
    let j = group_index(wid, nwg);
    let live = j < params.seqs;
    let n = params.n0 + min(j, params.seqs - 1u);
    let row = seqs[n];
    let positions = 2u * row.y + 1u;
    let s0 = lid * P;
"
    );
    // The odd labels' classes (even ones are the blank) and whether the recursion may skip the
    // blank between the label and the one two away (never for a blank).
    for u in (1..MAX_P).step_by(2) {
        let other = if alpha {
            format!("s0 + {u}u >= 2u && label(row, s0 + {u}u - 2u)")
        } else {
            format!("s0 + {u}u + 2u < positions && label(row, s0 + {u}u + 2u)")
        };
        let _ = writeln!(
            s,
            "    var c{u} = params.blank;\n    var k{u} = false;\n    if ({u}u < P && s0 + {u}u < positions) {{\n        \
             c{u} = label(row, s0 + {u}u);\n        k{u} = {other} != c{u};\n    }}"
        );
    }
    // The values one step back: read from the table when an earlier dispatch left them there.
    let (resume, back) = if alpha {
        ("params.t0 > 0u && params.t0 <= row.x", "params.t0 - 1u")
    } else {
        ("params.t1 < row.x", "params.t1")
    };
    let _ = writeln!(s, "    let resume = live && {resume};");
    for u in 0..MAX_P {
        let _ = writeln!(
            s,
            "    var v{u} = NEG_BIG;\n    if ({u}u < P && resume && s0 + {u}u < positions) {{ v{u} = {table}[at(j, {back}, s0 + {u}u)]; }}"
        );
    }
    if !alpha {
        grad_setup(s);
    }
    let edge = if alpha { last_two() } else { "vec2<f32>(v0, v1)".to_string() };
    let first = if alpha { "params.t0 + 1u" } else { "params.t1" };
    let _ = writeln!(s, "    publish({first}, lid, {edge});\n    workgroupBarrier();");
    if alpha {
        s.push_str("    for (var t = params.t0; t < params.t1; t++) {\n");
        s.push_str("        let e = neighbour(t, select(NONE, lid - 1u, lid > 0u));\n");
    } else {
        s.push_str("    for (var i = params.t0; i < params.t1; i++) {\n");
        s.push_str("        let t = params.t1 - 1u - (i - params.t0);\n");
        s.push_str("        let e = neighbour(t, select(NONE, lid + 1u, lid + 1u < WG));\n");
    }
    // alpha_0 holds the blank's and the first label's log-probabilities; beta at a sequence's
    // last step the last label's and the final blank's.
    let (start, starts) = if alpha {
        ("t == 0u", "s0 + {u}u < 2u")
    } else {
        ("t + 1u == row.x", "s0 + {u}u + 2u >= positions")
    };
    // Kept in the table: every step when asked; else what later dispatches read (alpha: a
    // chunk's last step and each sequence's final step, for its loss; beta: a chunk's first).
    let keep = if alpha { "t + 1u == params.t1 || t + 1u == row.x" } else { "t == params.t0" };
    let _ = writeln!(s, "        let keep = params.store_all != 0u || {keep};");
    if !alpha {
        s.push_str("        var part = 0.0;\n");
        for u in (1..MAX_P).step_by(2) {
            let _ = writeln!(s, "        var l{u} = 0.0;");
        }
    }
    s.push_str("        if (live && t < row.x) {\n            let lb = lp_at(t, n, params.blank);\n");
    for u in 0..MAX_P {
        let l = if u % 2 == 0 { "lb".to_string() } else { format!("lp_at(t, n, c{u})") };
        let (near, far) = if alpha { (below(u, 1), below(u, 2)) } else { (above(u, 1), above(u, 2)) };
        // A blank never skips: its third term is -inf, and lse2 gives lse3's bits with one exp
        // fewer.
        let lse = if u % 2 == 1 {
            format!("lse3(v{u}, {near}, select(NEG_BIG, {far}, k{u}))")
        } else {
            format!("lse2(v{u}, {near})")
        };
        let starts = starts.replace("{u}", &u.to_string());
        // beta_grad keeps an odd label's log-probability for its term.
        let keep_l =
            if !alpha && u % 2 == 1 { format!("\n                l{u} = l;") } else { String::new() };
        let _ = writeln!(
            s,
            "            var w{u} = NEG_BIG;
            if ({u}u < P && s0 + {u}u < positions) {{
                let l = {l};{keep_l}
                if ({start}) {{
                    w{u} = select(NEG_BIG, l, {starts});
                }} else {{
                    w{u} = {lse};
                    if (w{u} > NEG_HALF) {{
                        w{u} += l;
                    }}
                }}
                if (keep) {{
                    {table}[at(j, t, s0 + {u}u)] = w{u};
                }}
            }}"
        );
    }
    if !alpha {
        grad_terms(s);
    }
    for u in 0..MAX_P {
        let _ = writeln!(s, "            v{u} = w{u};");
    }
    s.push_str("        }\n");
    if !alpha {
        grad_writes(s);
    }
    let _ = writeln!(s, "        publish(t, lid, {edge});\n        workgroupBarrier();\n    }}\n}}");
}

/// `beta_grad` before its steps: whether the sequence's gradient is written here (a possible
/// alignment), its scale, and which of the thread's odd labels start their class's chain.
fn grad_setup(s: &mut String) {
    s.push_str(
        "    let grads = live && nll[n] != INF_BITS;
    let nll_n = bitcast<f32>(nll[n]);
    let scale = seq_scale(n, row);
",
    );
    for u in (1..MAX_P).step_by(2) {
        let _ = writeln!(
            s,
            "    var h{u} = false;\n    if ({u}u < P && s0 + {u}u < positions && grads) {{ \
             h{u} = (chains[j * params.sp + s0 + {u}u].x & HEAD) != 0u; }}"
        );
    }
}

/// `beta_grad` after a step's values `w{u}`: each label's occupation probability
/// `exp(alpha + beta + nll − lp)`, at most 1, so summed as is (alpha read four labels at a time:
/// the table's rows and each thread's first label are multiples of 4). The blank's (and any
/// label's of the blank's class) add to this thread's partial; the other labels' go to `odd`,
/// where their class's first label sums them.
fn grad_terms(s: &mut String) {
    s.push_str("            if (grads) {\n                let first = at(j, t, s0) / 4u;\n");
    for q in 0..MAX_P / 4 {
        let _ = writeln!(s, "                var a{q} = vec4<f32>(0.0);");
        let _ = writeln!(
            s,
            "                if ({}u < P && s0 + {}u < positions) {{ a{q} = ld4_alpha_in(first + {q}u); }}",
            4 * q,
            4 * q
        );
    }
    for u in 0..MAX_P {
        let _ = writeln!(s, "                if ({u}u < P && s0 + {u}u < positions) {{");
        let _ = writeln!(
            s,
            "                    let o = a{}.{} + w{u};",
            u / 4,
            ["x", "y", "z", "w"][(u % 4) as usize]
        );
        if u % 2 == 0 {
            s.push_str("                    part += exp(o + nll_n - lb);\n");
        } else {
            let _ = writeln!(
                s,
                "                    if (c{u} == params.blank) {{ part += exp(o + nll_n - lb); }} \
                 else {{ odd[j * params.sp + s0 + {u}u] = exp(o + nll_n - l{u}); }}"
            );
        }
        s.push_str("                }\n");
    }
    s.push_str("            }\n");
}

/// `beta_grad` after a step: once every thread's terms are out, thread 0 sums the blank's
/// partials and the first label of each other class its chain, and each writes its class's
/// gradient; the barrier after the step's edge values keeps `odd` until every chain is summed.
fn grad_writes(s: &mut String) {
    s.push_str(
        "        parts[lid] = part;
        storageBarrier();
        workgroupBarrier();
        if (grads && t < row.x) {
            let base = ((t - params.tb) * params.batch + n) * params.classes;
            if (lid == 0u) {
                var sum = 0.0;
                for (var i = 0u; i < WG; i++) {
                    sum += parts[i];
                }
                write_gamma(base + params.blank, sum, scale);
            }
",
    );
    for u in (1..MAX_P).step_by(2) {
        let _ = writeln!(
            s,
            "            if (h{u}) {{
                var sum = 0.0;
                var q = s0 + {u}u;
                for (var k = 0u; k < params.sp && q != NONE; k++) {{
                    sum += odd[j * params.sp + q];
                    q = chains[j * params.sp + q].y;
                }}
                write_gamma(base + c{u}, sum, scale);
            }}"
        );
    }
    s.push_str("        }\n        storageBarrier();\n");
}

/// The thread's last two labels' values, `(v{P−2}, v{P−1})`, for P a power of two from 4.
fn last_two() -> String {
    let mut e = "vec2<f32>(v2, v3)".to_string();
    let mut p = 8;
    while p <= MAX_P {
        e = format!("select({e}, vec2<f32>(v{}, v{}), P == {p}u)", p - 2, p - 1);
        p *= 2;
    }
    e
}

/// Label u's value `d` labels below, one step back: the thread below's edge values `e` =
/// (s0 − 2, s0 − 1) for the first two labels.
fn below(u: u32, d: u32) -> String {
    match u.checked_sub(d) {
        Some(i) => format!("v{i}"),
        None if d - u == 1 => "e.y".into(),
        None => "e.x".into(),
    }
}

/// Label u's value `d` labels above, one step back: the thread above's edge values `e` =
/// (s0 + P, s0 + P + 1) past the thread's last label (P is an override, so the choice folds).
fn above(u: u32, d: u32) -> String {
    let i = u + d;
    let edge = format!("select(e.y, e.x, {i}u == P)");
    if i < MAX_P { format!("select({edge}, v{i}, {i}u < P)") } else { edge }
}
