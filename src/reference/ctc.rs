//! The f64 twin of the CTC loss and of the gradient PyTorch gives: plain alpha and beta
//! recursions over each sequence's extended labels, in log space with true infinities.

use super::{Reduction, reduce_with};

/// One sequence: its input length, and its targets.
#[derive(Clone, Debug)]
pub struct Sequence<'a> {
    pub input_length: usize,
    pub targets: &'a [i64],
}

fn lse(values: &[f64]) -> f64 {
    let m = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY { m } else { m + values.iter().map(|v| (v - m).exp()).sum::<f64>().ln() }
}

/// The extended labels: blank, l_0, blank, l_1, …, blank.
fn extended(targets: &[i64], blank: usize) -> Vec<usize> {
    let mut out = vec![blank];
    for &t in targets {
        out.push(t as usize);
        out.push(blank);
    }
    out
}

/// log alpha `(T_n, S')` and log beta of one sequence; `lp(t, c)` its log-probabilities.
fn tables(
    seq: &Sequence<'_>,
    blank: usize,
    lp: &dyn Fn(usize, usize) -> f64,
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let l = extended(seq.targets, blank);
    let (t_n, sp) = (seq.input_length, l.len());
    let mut alpha = vec![vec![f64::NEG_INFINITY; sp]; t_n];
    let mut beta = vec![vec![f64::NEG_INFINITY; sp]; t_n];
    if t_n == 0 {
        return (alpha, beta);
    }
    for s in 0..sp.min(2) {
        alpha[0][s] = lp(0, l[s]);
    }
    for t in 1..t_n {
        for s in 0..sp {
            let mut from = vec![alpha[t - 1][s]];
            if s >= 1 {
                from.push(alpha[t - 1][s - 1]);
            }
            if s >= 2 && l[s - 2] != l[s] {
                from.push(alpha[t - 1][s - 2]);
            }
            alpha[t][s] = lse(&from) + lp(t, l[s]);
        }
    }
    for s in sp.saturating_sub(2)..sp {
        beta[t_n - 1][s] = lp(t_n - 1, l[s]);
    }
    for t in (0..t_n - 1).rev() {
        for s in 0..sp {
            let mut from = vec![beta[t + 1][s]];
            if s + 1 < sp {
                from.push(beta[t + 1][s + 1]);
            }
            if s + 2 < sp && l[s + 2] != l[s] {
                from.push(beta[t + 1][s + 2]);
            }
            beta[t][s] = lse(&from) + lp(t, l[s]);
        }
    }
    (alpha, beta)
}

/// The negative log-likelihood of one sequence (+inf where no alignment exists).
fn nll(seq: &Sequence<'_>, alpha: &[Vec<f64>]) -> f64 {
    let Some(last) = alpha.last() else {
        return if seq.targets.is_empty() { 0.0 } else { f64::INFINITY };
    };
    let sp = last.len();
    -lse(&last[sp.saturating_sub(2)..])
}

/// Where the log-probabilities `(T, N, C)` are read: `lp[(t·N + n)·C + c]`.
fn reader(lp: &[f64], batch: usize, classes: usize, n: usize) -> impl Fn(usize, usize) -> f64 + '_ {
    move |t, c| lp[(t * batch + n) * classes + c]
}

/// The CTC loss per sequence, reduced as PyTorch: `Mean` divides each by its target length
/// (at least 1) and averages; `zero_infinity` turns +inf into 0.
pub fn ctc(
    lp: &[f64],
    (batch, classes): (usize, usize),
    seqs: &[Sequence<'_>],
    blank: usize,
    zero_infinity: bool,
    reduction: Reduction,
) -> Vec<f64> {
    let losses = seqs
        .iter()
        .enumerate()
        .map(|(n, seq)| {
            let (alpha, _) = tables(seq, blank, &reader(lp, batch, classes, n));
            let v = nll(seq, &alpha);
            let v = if zero_infinity && v == f64::INFINITY { 0.0 } else { v };
            if reduction == Reduction::Mean { v / seq.targets.len().max(1) as f64 } else { v }
        })
        .collect();
    reduce_with(losses, reduction, seqs.len() as f64)
}

/// PyTorch's CTC gradient in `lp`: `(exp(lp) − γ)·s_n` for t below the input length, 0 beyond,
/// NaN where the loss is +inf (0 with `zero_infinity`); `s_n` the upstream gradient of sequence
/// n (over `N·max(L, 1)` for the mean).
pub fn ctc_backward(
    lp: &[f64],
    (batch, classes): (usize, usize),
    seqs: &[Sequence<'_>],
    blank: usize,
    zero_infinity: bool,
    grad: &[f64],
    reduction: Reduction,
) -> Vec<f64> {
    let steps = lp.len().checked_div(batch * classes).unwrap_or(0);
    let mut out = vec![0.0; lp.len()];
    for (n, seq) in seqs.iter().enumerate() {
        let read = reader(lp, batch, classes, n);
        let (alpha, beta) = tables(seq, blank, &read);
        let v = nll(seq, &alpha);
        let s = match reduction {
            Reduction::None => grad[n],
            Reduction::Sum => grad[0],
            Reduction::Mean => grad[0] / (seqs.len() * seq.targets.len().max(1)) as f64,
        };
        let l = extended(seq.targets, blank);
        for t in 0..seq.input_length.min(steps) {
            // Σ over the positions of each class of alpha·beta, in log space.
            let mut per_class = vec![f64::NEG_INFINITY; classes];
            for (k, &c) in l.iter().enumerate() {
                per_class[c] = lse(&[per_class[c], alpha[t][k] + beta[t][k]]);
            }
            for (c, &ab) in per_class.iter().enumerate() {
                let at = (t * batch + n) * classes + c;
                out[at] = if v == f64::INFINITY {
                    if zero_infinity { 0.0 } else { f64::NAN }
                } else {
                    (lp[at].exp() - (ab + v - lp[at]).exp()) * s
                };
            }
        }
    }
    out
}
