//! A mix of every loss family, forward and backward, on small fixed inputs: what the
//! concurrency and soak tests run over and over.

use wgpu_loss::{
    Accuracy, Bce, BceWithLogits, CrossEntropy, Device, Huber, Indices, KlDiv, L1, Linear,
    LinearCrossEntropy, LogSoftmax, Mse, Nll, Reduction, Result, SmoothL1, Softmax, Tensor,
};

use super::Rng;

/// Inputs uploaded once: logits (rows, cols), their targets, probabilities of the same shape, a
/// linear layer, and upstream gradients.
pub struct Inputs {
    logits: Tensor,
    targets: Indices,
    probs: Tensor,
    other: Tensor,
    x: Tensor,
    w: Tensor,
    b: Tensor,
    dy: Tensor,
    one: Tensor,
    per_row: Tensor,
}

pub const ROWS: usize = 24;
pub const COLS: usize = 100;
const H: usize = 16;

impl Inputs {
    pub fn new(dev: &Device, seed: u64) -> Inputs {
        let mut rng = Rng::new(seed);
        let n = ROWS * COLS;
        let probs: Vec<f32> = (0..n).map(|_| 0.5 + 0.49 * rng.unit()).collect();
        let mut t = rng.classes(ROWS, COLS);
        t[1] = -100;
        Inputs {
            logits: dev.tensor(&rng.values(n, 3.0), &[ROWS, COLS]).unwrap(),
            targets: dev.indices(&t, &[ROWS]).unwrap(),
            probs: dev.tensor(&probs, &[ROWS, COLS]).unwrap(),
            other: dev.tensor(&rng.values(n, 2.0), &[ROWS, COLS]).unwrap(),
            x: dev.tensor(&rng.values(ROWS * H, 1.0), &[ROWS, H]).unwrap(),
            w: dev.tensor(&rng.values(COLS * H, 1.0), &[COLS, H]).unwrap(),
            b: dev.tensor(&rng.values(COLS, 1.0), &[COLS]).unwrap(),
            dy: dev.tensor(&rng.values(n, 1.0), &[ROWS, COLS]).unwrap(),
            one: dev.tensor(&[1.0], &[]).unwrap(),
            per_row: dev.tensor(&rng.values(ROWS, 1.0), &[ROWS]).unwrap(),
        }
    }
}

/// How many distinct operations [`run`] knows.
pub const KINDS: usize = 24;

/// Runs operation `kind` (mod [`KINDS`]) and reads every output back.
pub fn run(kind: usize, i: &Inputs) -> Result<Vec<Vec<f32>>> {
    let (x, y, p) = (&i.logits, &i.other, &i.probs);
    let read = |ts: &[&Tensor]| ts.iter().map(|t| t.to_vec()).collect::<Result<Vec<_>>>();
    let one = |t: Result<Tensor>| -> Result<Vec<Vec<f32>>> { Ok(vec![t?.to_vec()?]) };
    match kind % KINDS {
        0 => one(Mse::default().forward(x, y)),
        1 => one(Mse::default().reduction(Reduction::None).backward(x, y, &i.dy)),
        2 => one(L1::default().reduction(Reduction::Sum).forward(x, y)),
        3 => one(SmoothL1::default().backward(x, y, &i.one)),
        4 => one(Huber::default().delta(0.5).forward(x, y)),
        5 => one(Bce::default().forward(p, p)),
        6 => one(Bce::default().backward(p, p, &i.one)),
        7 => one(BceWithLogits::default().forward(x, p)),
        8 => one(BceWithLogits::default().backward(x, p, &i.one)),
        9 => one(KlDiv::default().forward(&wgpu_loss::log_softmax(x)?, p)),
        10 => one(KlDiv::default().backward(x, p, &i.one)),
        11 => one(CrossEntropy::default().label_smoothing(0.1).forward(x, &i.targets)),
        12 => one(CrossEntropy::default().reduction(Reduction::None).backward(x, &i.targets, &i.per_row)),
        13 => one(CrossEntropy::default().forward_probs(x, &wgpu_loss::softmax(y)?)),
        14 => {
            let (dx, dy) = CrossEntropy::default().backward_probs(x, &wgpu_loss::softmax(y)?, &i.one)?;
            read(&[&dx, &dy])
        }
        15 => one(Nll::default().forward(&wgpu_loss::log_softmax(x)?, &i.targets)),
        16 => one(Nll::default().backward(x, &i.targets, &i.one)),
        17 => {
            let ls = LogSoftmax::default();
            let out = ls.forward(x)?;
            let dx = ls.backward(&out, &i.dy)?;
            read(&[&out, &dx])
        }
        18 => {
            let sm = Softmax::default().dim(0);
            let out = sm.forward(x)?;
            let dx = sm.backward(&out, &i.dy)?;
            read(&[&out, &dx])
        }
        19 => {
            let a = Accuracy::default().top_k(5).forward(x, &i.targets)?;
            let b = wgpu_loss::binary_accuracy(x, y)?;
            read(&[&a, &b])
        }
        20 => one(wgpu_loss::linear(&i.x, &i.w, Some(&i.b))),
        21 => {
            let g = Linear::default().backward(&i.x, &i.w, &i.dy)?;
            read(&[&g.input, &g.weight, &g.bias])
        }
        22 => {
            let l = LinearCrossEntropy::default().label_smoothing(0.05);
            let (out, g) = l.forward_backward(&i.x, &i.w, Some(&i.b), &i.targets, &i.one)?;
            read(&[&out.loss, &out.lse, &g.input, &g.weight, &g.bias])
        }
        _ => {
            let s = wgpu_loss::sum(x)?;
            let m = wgpu_loss::mean(y)?;
            read(&[&s, &m])
        }
    }
}
