//! The LM head with W split by vocabulary rows over two devices (lavapipe and llvmpipe-GL in CI):
//! shard states, the host combine, and the shards' backward equal the single-device results for
//! every option, forward (loss, lse, per-token outputs) and backward (dX summed over the
//! shards, dW and db by shard), with ignored rows and targets on either side of the split.

use crate::common;

use common::{Rng, Tol, assert_close, label, one_per_adapter};
use wgpu_loss::{Device, Error, LinearCrossEntropy, Reduction, ShardState, Tensor, TokenGrads, VocabShard};

/// Host data: x (n, h), W (v, h), b, class weights, token weights, targets (every fourth
/// ignored), and the upstream gradients of the loss (per row), logprob and entropy.
struct Host {
    n: usize,
    h: usize,
    v: usize,
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    cw: Vec<f32>,
    tw: Vec<f32>,
    t: Vec<i64>,
    g: Vec<f32>,
    glp: Vec<f32>,
    gh: Vec<f32>,
}

impl Host {
    fn new(rng: &mut Rng, n: usize, h: usize, v: usize) -> Host {
        let mut t = rng.classes(n, v);
        for x in t.iter_mut().skip(1).step_by(4) {
            *x = -100;
        }
        Host {
            n,
            h,
            v,
            x: rng.values(n * h, 1.0),
            w: rng.values(v * h, 1.0),
            b: rng.values(v, 1.0),
            cw: (0..v).map(|_| 0.5 + rng.unit().abs()).collect(),
            tw: (0..n).map(|i| if i % 5 == 2 { 0.0 } else { 0.5 + rng.unit().abs() }).collect(),
            t,
            g: rng.values(n, 1.0),
            glp: rng.values(n, 1.0),
            gh: rng.values(n, 1.0),
        }
    }
}

/// Options on `dev`: `every` turns on class and token weights, smoothing, softcap, temperature
/// and the z-loss.
fn options(dev: &Device, d: &Host, every: bool, reduction: Reduction) -> LinearCrossEntropy {
    let l = LinearCrossEntropy::default().reduction(reduction).token_outputs(true);
    if !every {
        return l;
    }
    l.weight(dev.tensor(&d.cw, &[d.v]).unwrap())
        .token_weight(dev.tensor(&d.tw, &[d.n]).unwrap())
        .label_smoothing(0.1)
        .softcap(3.0)
        .temperature(0.7)
        .z_loss(1e-3)
}

fn upstream(dev: &Device, d: &Host, reduction: Reduction) -> Tensor {
    match reduction {
        Reduction::None => dev.tensor(&d.g, &[d.n]).unwrap(),
        _ => dev.tensor(&[0.75], &[]).unwrap(),
    }
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// The head split at `cuts` (class boundaries) over `devs` in turn, against one device.
fn check(devs: &[&Device], d: &Host, cuts: &[usize], every: bool, reduction: Reduction) {
    let what = format!(
        "split {cuts:?} of {} over {} every={every} {reduction:?}",
        d.v,
        devs.iter().map(|d| label(d)).collect::<Vec<_>>().join(" + ")
    );
    let one = devs[0];
    let (x1, w1, b1) = (
        one.tensor(&d.x, &[d.n, d.h]).unwrap(),
        one.tensor(&d.w, &[d.v, d.h]).unwrap(),
        one.tensor(&d.b, &[d.v]).unwrap(),
    );
    let t1 = one.indices(&d.t, &[d.n]).unwrap();
    let single = options(one, d, every, reduction);
    let out = single.forward(&x1, &w1, Some(&b1), &t1).unwrap();
    let tokens = out.tokens.as_ref().unwrap();
    let (glp1, gh1) = (one.tensor(&d.glp, &[d.n]).unwrap(), one.tensor(&d.gh, &[d.n]).unwrap());
    let both = TokenGrads { logprob: Some(&glp1), entropy: Some(&gh1) };
    let want = single
        .backward_with_tokens(&x1, &w1, Some(&b1), &t1, &upstream(one, d, reduction), both, Some(&out))
        .unwrap();

    // The shards: classes bounds[k] .. bounds[k + 1] on devs[k % len].
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(d.v);
    let shards: Vec<(&Device, VocabShard, usize)> = bounds
        .windows(2)
        .enumerate()
        .map(|(k, r)| (devs[k % devs.len()], VocabShard { start: r[0], global_vocab: d.v }, r[1] - r[0]))
        .collect();
    let upload = |dev: &Device, s: VocabShard, len: usize| {
        (
            dev.tensor(&d.x, &[d.n, d.h]).unwrap(),
            dev.tensor(&d.w[s.start * d.h..(s.start + len) * d.h], &[len, d.h]).unwrap(),
            dev.tensor(&d.b[s.start..s.start + len], &[len]).unwrap(),
            dev.indices(&d.t, &[d.n]).unwrap(),
        )
    };
    let states: Vec<ShardState> = shards
        .iter()
        .map(|&(dev, s, len)| {
            let (x, w, b, t) = upload(dev, s, len);
            options(dev, d, every, reduction).shard_state(&x, &w, Some(&b), &t, s).unwrap()
        })
        .collect();
    assert!(
        states.iter().all(|s| s.words.len() == d.n * wgpu_loss::SHARD_STATE_WORDS),
        "{what}: O(N) states"
    );
    let combined = single.combine(&t1, &states).unwrap();
    let tol = Tol { abs: 2e-5 * d.h as f64, rel: 1e-4 };
    assert_close(&format!("{what}: loss"), &combined.loss, &f64s(&out.loss.to_vec().unwrap()), tol);
    assert_close(&format!("{what}: lse"), &combined.lse, &f64s(&out.lse.to_vec().unwrap()), tol);
    assert_close(
        &format!("{what}: logprob"),
        &combined.logprob,
        &f64s(&tokens.logprob.to_vec().unwrap()),
        tol,
    );
    assert_close(
        &format!("{what}: entropy"),
        &combined.entropy,
        &f64s(&tokens.entropy.to_vec().unwrap()),
        tol,
    );
    let argmax: Vec<i64> = tokens.argmax.to_vec().unwrap().iter().map(|&a| a as i64).collect();
    assert_eq!(combined.argmax, argmax, "{what}: argmax");
    assert_eq!(combined.correct, tokens.correct.to_vec().unwrap(), "{what}: correct");
    assert_eq!(combined.accuracy, tokens.accuracy.item().unwrap(), "{what}: accuracy");

    let mut dx = vec![0.0f64; d.n * d.h];
    let (mut dw, mut db) = (Vec::new(), Vec::new());
    for &(dev, s, len) in &shards {
        let (x, w, b, t) = upload(dev, s, len);
        let (glp, gh) = (dev.tensor(&d.glp, &[d.n]).unwrap(), dev.tensor(&d.gh, &[d.n]).unwrap());
        let g = upstream(dev, d, reduction);
        let grads = options(dev, d, every, reduction)
            .shard_backward(
                &x,
                &w,
                Some(&b),
                &t,
                s,
                &combined,
                &g,
                TokenGrads { logprob: Some(&glp), entropy: Some(&gh) },
            )
            .unwrap();
        for (a, b) in dx.iter_mut().zip(grads.input.to_vec().unwrap()) {
            *a += b as f64;
        }
        dw.extend(grads.weight.to_vec().unwrap());
        db.extend(grads.bias.to_vec().unwrap());
    }
    let gtol = Tol { abs: 2e-6 * (d.v as f64).sqrt() * (d.h as f64).sqrt(), rel: 2e-4 };
    let dx32: Vec<f32> = dx.iter().map(|&v| v as f32).collect();
    assert_close(
        &format!("{what}: dX summed over shards"),
        &dx32,
        &f64s(&want.input.to_vec().unwrap()),
        gtol,
    );
    assert_close(&format!("{what}: dW"), &dw, &f64s(&want.weight.to_vec().unwrap()), gtol);
    assert_close(&format!("{what}: db"), &db, &f64s(&want.bias.to_vec().unwrap()), gtol);
}

/// Two adapters when there are two (CI: lavapipe and llvmpipe-GL), else the one twice.
fn two_devices() -> Vec<&'static Device> {
    let devs = one_per_adapter();
    let two = if devs.len() >= 2 { devs[..2].to_vec() } else { vec![devs[0], devs[0]] };
    eprintln!("vocab_parallel: shards on {} and {}", two[0].name(), two[1].name());
    two
}

#[test]
fn a_head_split_over_two_devices_equals_one_device() {
    let mut rng = Rng::new(81);
    let devs = two_devices();
    let d = Host::new(&mut rng, 29, 17, 203);
    for every in [false, true] {
        for reduction in [Reduction::Mean, Reduction::None, Reduction::Sum] {
            check(&devs, &d, &[77], every, reduction);
        }
    }
    // Three shards, alternating devices, one of them a single class.
    check(&devs, &d, &[64, 65], true, Reduction::Mean);
}

/// Every batch size from 1 to 64 at H = 24, V = 50 split at 25, each reduction in turn, with and
/// without every option: the shards' backward uploads the combined statistics inside its
/// operation, and for N = 7…12 that upload once landed in a buffer the same operation had
/// released with its work not yet run (the gradients were off by up to 10⁵). Run on the two
/// adapters and again on both with an adversarial pool.
#[test]
fn every_batch_size_from_1_to_64() {
    let devs = two_devices();
    let adversarial: Vec<&Device> = common::adversarial_devices().iter().collect();
    let reductions = [Reduction::Mean, Reduction::None, Reduction::Sum];
    for n in 1..=64 {
        let mut rng = Rng::new(1000 + n as u64);
        let d = Host::new(&mut rng, n, 24, 50);
        let reduction = reductions[n % 3];
        check(&devs, &d, &[25], n % 2 == 0, reduction);
        check(&adversarial, &d, &[25], n % 2 == 1, reduction);
    }
}

/// `combine` checks the options' weights as `shard_state` does: a class weight that is not one
/// per class of the whole vocabulary, or a token weight not of the targets' shape, is a shape
/// error, never an index out of bounds.
#[test]
fn combine_refuses_weights_of_other_shapes() {
    let dev = two_devices()[0];
    let mut rng = Rng::new(83);
    let (n, h, v) = (5, 3, 10);
    let d = Host::new(&mut rng, n, h, v);
    let x = dev.tensor(&d.x, &[n, h]).unwrap();
    let t = dev.indices(&d.t, &[n]).unwrap();
    let l = LinearCrossEntropy::default();
    let states: Vec<ShardState> = [(0, 4), (4, 10)]
        .into_iter()
        .map(|(lo, hi)| {
            let w = dev.tensor(&d.w[lo * h..hi * h], &[hi - lo, h]).unwrap();
            l.shard_state(&x, &w, None, &t, VocabShard { start: lo, global_vocab: v }).unwrap()
        })
        .collect();
    assert!(l.combine(&t, &states).is_ok());
    for len in [v - 1, v + 1] {
        let cw = l.clone().weight(dev.tensor(&vec![1.0; len], &[len]).unwrap());
        let err = cw.combine(&t, &states).map(|_| ()).unwrap_err();
        assert!(matches!(&err, Error::Shape { .. }), "class weight of {len}: {err}");
    }
    for len in [n - 1, n + 3] {
        let tw = l.clone().token_weight(dev.tensor(&vec![1.0; len], &[len]).unwrap());
        let err = tw.combine(&t, &states).map(|_| ()).unwrap_err();
        assert!(matches!(&err, Error::Shape { .. }), "token weight of {len}: {err}");
    }
}

#[test]
fn shard_states_that_do_not_cover_the_vocabulary_are_errors() {
    let dev = two_devices()[0];
    let mut rng = Rng::new(82);
    let d = Host::new(&mut rng, 4, 3, 10);
    let x = dev.tensor(&d.x, &[4, 3]).unwrap();
    let t = dev.indices(&d.t, &[4]).unwrap();
    let l = LinearCrossEntropy::default();
    let w = dev.tensor(&d.w[..15], &[5, 3]).unwrap();
    let first = l.shard_state(&x, &w, None, &t, VocabShard { start: 0, global_vocab: 10 }).unwrap();
    // Half the vocabulary only, or a shard given twice.
    assert!(matches!(l.combine(&t, std::slice::from_ref(&first)), Err(Error::Shape { .. })));
    assert!(matches!(l.combine(&t, &[first.clone(), first.clone()]), Err(Error::Shape { .. })));
    // A shard past the end of the vocabulary.
    let past = l.shard_state(&x, &w, None, &t, VocabShard { start: 6, global_vocab: 10 });
    assert!(matches!(past, Err(Error::Shape { .. })), "{past:?}");
}
