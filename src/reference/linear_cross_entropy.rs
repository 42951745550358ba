//! f64 twin of `linear_cross_entropy`: `linear`, the optional softcap, cross-entropy with class
//! ids and the optional z-loss, composed row by row, and its gradients in x, W and b.

use super::linear::{linear, linear_backward};
use super::nll::check_target;
use super::{Real, Reduction, f64s, logsumexp};
use crate::error::Result;

/// The options of [`linear_cross_entropy`], as in `ops::LinearCrossEntropy`.
#[derive(Clone, Copy, Debug)]
pub struct Options<'a, T> {
    /// Per-class weights `(V)`.
    pub weight: Option<&'a [T]>,
    /// Per-row token weights `(N)`.
    pub token_weight: Option<&'a [T]>,
    /// Targets equal to this are ignored.
    pub ignore_index: i64,
    /// How the per-row losses are reduced.
    pub reduction: Reduction,
    /// Label smoothing ε.
    pub label_smoothing: f64,
    /// `s` of the softcap `s·tanh(z / s)` applied to the logits.
    pub softcap: Option<f64>,
    /// λ of the z-loss `λ·lse²` added to every counted row.
    pub z_loss: f64,
    /// The temperature the capped logits are divided by.
    pub temperature: f64,
}

impl<T> Default for Options<'_, T> {
    fn default() -> Self {
        Options {
            weight: None,
            token_weight: None,
            ignore_index: crate::ops::cross_entropy::DEFAULT_IGNORE_INDEX,
            reduction: Reduction::Mean,
            label_smoothing: 0.0,
            softcap: None,
            z_loss: 0.0,
            temperature: 1.0,
        }
    }
}

/// The per-row quantities both directions need.
struct Rows {
    /// Softcapped logits over the temperature `(N, V)`.
    z: Vec<f64>,
    /// d(softcapped logit)/d(logit), `(N, V)`.
    dcap: Vec<f64>,
    lse: Vec<f64>,
    /// The counted rows' class, `None` for ignored ones.
    targets: Vec<Option<usize>>,
    /// Each row's token weight (1 without).
    scale: Vec<f64>,
    /// Σ s·w[t] and Σ s over the counted rows: the means' denominators.
    weight_sum: f64,
    count: f64,
}

fn rows<T: Real>(
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    targets: &[i64],
    h: usize,
    o: &Options<T>,
) -> Result<Rows> {
    let v = w.len().checked_div(h).unwrap_or(0);
    let raw = linear(x, w, b, h);
    let t = o.temperature;
    let cap = |z: f64| match o.softcap {
        Some(s) => (s * (z / s).tanh() / t, (1.0 - (z / s).tanh().powi(2)) / t),
        None => (z / t, 1.0 / t),
    };
    let (z, dcap): (Vec<f64>, Vec<f64>) = raw.iter().map(|&z| cap(z)).unzip();
    let lse =
        if v == 0 { vec![f64::NEG_INFINITY; targets.len()] } else { z.chunks(v).map(logsumexp).collect() };
    let cw = |c: usize| o.weight.map_or(1.0, |w| w[c].into());
    let scale: Vec<f64> = (0..targets.len()).map(|r| o.token_weight.map_or(1.0, |s| s[r].into())).collect();
    let mut checked = Vec::with_capacity(targets.len());
    let (mut weight_sum, mut count) = (0.0, 0.0);
    for (r, &t) in targets.iter().enumerate() {
        let t = check_target("linear_cross_entropy", r, t, v, o.ignore_index)?;
        if let Some(c) = t {
            weight_sum += scale[r] * cw(c);
            count += scale[r];
        }
        checked.push(t);
    }
    Ok(Rows { z, dcap, lse, targets: checked, scale, weight_sum, count })
}

/// `cross_entropy(cap(x·Wᵀ + b), targets) + z_loss·lse²` for `x` `(N, H)`, `w` `(V, H)`:
/// per counted row, `ce = (1 − ε)·w[t]·(lse − z[t]) + ε/V·Σ_c w[c]·(lse − z[c])` and
/// `zl = λ·lse²`; ignored rows give 0. `Mean` is `Σ ce / Σ w[t] + Σ zl / counted rows` (NaN when
/// no row counts). Returns the (reduced) losses and every row's log-sum-exp.
pub fn linear_cross_entropy<T: Real>(
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    targets: &[i64],
    h: usize,
    o: &Options<T>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let rs = rows(x, w, b, targets, h, o)?;
    let v = w.len().checked_div(h).unwrap_or(0);
    let cw = |c: usize| o.weight.map_or(1.0, |w| w[c].into());
    let eps = o.label_smoothing;
    let (mut ce_all, mut zl_all) = (Vec::new(), Vec::new());
    for (r, t) in rs.targets.iter().enumerate() {
        let Some(t) = *t else {
            ce_all.push(0.0);
            zl_all.push(0.0);
            continue;
        };
        let z = &rs.z[r * v..(r + 1) * v];
        let lse = rs.lse[r];
        let smooth: f64 = (0..v).map(|c| cw(c) * (lse - z[c])).sum();
        let s = rs.scale[r];
        ce_all.push(s * ((1.0 - eps) * cw(t) * (lse - z[t]) + eps / v as f64 * smooth));
        zl_all.push(s * o.z_loss * lse * lse);
    }
    let loss = match o.reduction {
        Reduction::None => ce_all.iter().zip(&zl_all).map(|(a, b)| a + b).collect(),
        Reduction::Sum => vec![ce_all.iter().sum::<f64>() + zl_all.iter().sum::<f64>()],
        Reduction::Mean if rs.weight_sum == 0.0 => vec![f64::NAN],
        Reduction::Mean => {
            vec![ce_all.iter().sum::<f64>() / rs.weight_sum + zl_all.iter().sum::<f64>() / rs.count]
        }
    };
    Ok((loss, rs.lse))
}

/// The per-token outputs of [`linear_cross_entropy`]'s rows (of the logits it sees,
/// `cap(z) / T`): the target's log-probability and the softmax's entropy (both 0 for ignored
/// rows), the argmax (first maximum), whether it is the target (0 for ignored rows), and the
/// token accuracy over the counted rows (NaN when none counts).
#[derive(Clone, Debug, PartialEq)]
pub struct TokenOutputs {
    pub logprob: Vec<f64>,
    pub entropy: Vec<f64>,
    pub argmax: Vec<i64>,
    pub correct: Vec<f64>,
    pub accuracy: f64,
}

/// [`TokenOutputs`] of `x` `(N, H)`, `w` `(V, H)` with options `o`.
pub fn token_outputs<T: Real>(
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    targets: &[i64],
    h: usize,
    o: &Options<T>,
) -> Result<TokenOutputs> {
    let rs = rows(x, w, b, targets, h, o)?;
    let v = w.len().checked_div(h).unwrap_or(0);
    let mut out =
        TokenOutputs { logprob: vec![], entropy: vec![], argmax: vec![], correct: vec![], accuracy: 0.0 };
    let mut counted = 0.0;
    for (r, t) in rs.targets.iter().enumerate() {
        let z = &rs.z[r * v..(r + 1) * v];
        let lse = rs.lse[r];
        let arg = (0..v).fold(0, |best, c| if z[c] > z[best] { c } else { best });
        out.argmax.push(arg as i64);
        let Some(t) = *t else {
            out.logprob.push(0.0);
            out.entropy.push(0.0);
            out.correct.push(0.0);
            continue;
        };
        counted += 1.0;
        out.logprob.push(z[t] - lse);
        out.entropy.push(lse - z.iter().map(|&zc| (zc - lse).exp() * zc).sum::<f64>());
        out.correct.push((arg == t) as u8 as f64);
    }
    out.accuracy = if counted == 0.0 { f64::NAN } else { out.correct.iter().sum::<f64>() / counted };
    Ok(out)
}

/// The gradients `(dX, dW, db)` of [`linear_cross_entropy`] for upstream gradient `grad` (one
/// value, or one per row for `None`).
#[allow(clippy::too_many_arguments)]
pub fn linear_cross_entropy_backward<T: Real>(
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    targets: &[i64],
    h: usize,
    o: &Options<T>,
    grad: &[T],
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    linear_cross_entropy_backward_tokens(x, w, b, targets, h, o, grad, None, None)
}

/// [`linear_cross_entropy_backward`] with upstream gradients of the per-token logprob and
/// entropy (one per row) as well: `d logprob / dz[c] = [c = t] − p[c]`,
/// `d entropy / dz[c] = −p[c]·(log p[c] + H)`, both 0 on ignored rows.
#[allow(clippy::too_many_arguments)]
pub fn linear_cross_entropy_backward_tokens<T: Real>(
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    targets: &[i64],
    h: usize,
    o: &Options<T>,
    grad: &[T],
    grad_logprob: Option<&[T]>,
    grad_entropy: Option<&[T]>,
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let rs = rows(x, w, b, targets, h, o)?;
    let entropy = token_outputs(x, w, b, targets, h, o)?.entropy;
    let v = w.len().checked_div(h).unwrap_or(0);
    let cw = |c: usize| o.weight.map_or(1.0, |w| w[c].into());
    let total_w: f64 = (0..v).map(cw).sum();
    let eps = o.label_smoothing;
    let grad = f64s(grad);
    let mut dz = vec![0.0; rs.z.len()];
    for (r, t) in rs.targets.iter().enumerate() {
        let Some(t) = *t else { continue };
        // The upstream gradient of the cross-entropy part and of the z-loss part.
        let (a, zb) = match o.reduction {
            Reduction::None => (grad[r], grad[r]),
            Reduction::Sum => (grad[0], grad[0]),
            Reduction::Mean => (grad[0] / rs.weight_sum, grad[0] / rs.count),
        };
        let (a, zb) = (a * rs.scale[r], zb * rs.scale[r]);
        let lse = rs.lse[r];
        let glp = grad_logprob.map_or(0.0, |g| g[r].into());
        let gh = grad_entropy.map_or(0.0, |g| g[r].into());
        for c in 0..v {
            let i = r * v + c;
            let p = (rs.z[i] - lse).exp();
            let hit = (c == t) as u8 as f64;
            let ce = (1.0 - eps) * cw(t) * (p - hit) + eps / v as f64 * (total_w * p - cw(c));
            let tokens = glp * (hit - p) - gh * p * ((rs.z[i] - lse) + entropy[r]);
            dz[i] = (a * ce + zb * 2.0 * o.z_loss * lse * p + tokens) * rs.dcap[i];
        }
    }
    Ok(linear_backward(&f64s(x), &f64s(w), &dz, h))
}
