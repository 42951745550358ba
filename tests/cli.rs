//! The `wgpu-loss` binary: every OP × eval/grad on every adapter against the references, every
//! error case (non-zero exit, one message, no file left), info, bench --quick --json, compare.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Rng, Tol, assert_close, devices, f64s};
use npyz::WriterBuilder;
use wgpu_loss::cli::npy;
use wgpu_loss::reference::class_margin as cm;
use wgpu_loss::reference::ctc as ctc_ref;
use wgpu_loss::reference::divergence as div;
use wgpu_loss::reference::embedding_rows as er;
use wgpu_loss::reference::pointwise::{self, Pointwise};
use wgpu_loss::reference::{cross_entropy as ce, linear as lin, log_softmax as ls, nll as nll_ref};
use wgpu_loss::{DType, Reduction};

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wgpu-loss")).args(args).output().expect("the wgpu-loss binary runs")
}

/// Runs the binary once per argument list, a few at a time (each process compiles its own
/// pipelines, one core's work on the software adapters), returning the outputs in order.
fn cli_all(lines: Vec<Vec<String>>) -> Vec<Output> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let outputs: Vec<std::sync::Mutex<Option<Output>>> = lines.iter().map(|_| Default::default()).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(line) = lines.get(i) else { break };
                    let args: Vec<&str> = line.iter().map(String::as_str).collect();
                    *outputs[i].lock().unwrap() = Some(cli(&args));
                }
            });
        }
    });
    outputs.into_iter().map(|o| o.into_inner().unwrap().expect("every invocation ran")).collect()
}

/// Owned copies of `args`.
fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// A fresh empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-loss-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write<T: npyz::AutoSerialize + Copy>(path: &Path, data: &[T], shape: &[usize]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut w = npyz::WriteOptions::new().default_dtype().shape(&shape).writer(&mut f).begin_nd().unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

fn read(path: &Path) -> (Vec<f32>, Vec<usize>) {
    let npy = npyz::NpyFile::new(std::io::BufReader::new(std::fs::File::open(path).unwrap())).unwrap();
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    (npy.into_vec::<f32>().unwrap(), shape)
}

/// The `--backend` value that selects `dev`.
fn backend(dev: &wgpu_loss::Device) -> &'static str {
    match dev.info().backend {
        wgpu::Backend::Vulkan => "vulkan",
        wgpu::Backend::Gl => "gl",
        wgpu::Backend::Metal => "metal",
        wgpu::Backend::Dx12 => "dx12",
        b => panic!("no --backend value for {b:?}"),
    }
}

/// The adapters to run the binary on: each backend once (the binary opens its own device).
fn backends() -> Vec<&'static str> {
    let mut b: Vec<&'static str> = devices().iter().map(backend).collect();
    b.dedup();
    b
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_op_eval_and_grad_on_every_adapter() {
    let dir = scratch("ops");
    let p = |name: &str| dir.join(name);
    let mut rng = Rng::new(60);
    let (n, c) = (6, 5);
    let x = rng.values(n * c, 3.0);
    let y = rng.values(n * c, 3.0);
    let probs: Vec<f32> = (0..n * c).map(|_| (rng.unit() + 1.0) * 0.5).collect();
    let labels: Vec<f32> = (0..n * c).map(|i| (i % 2) as f32).collect();
    let t: Vec<i64> = vec![0, 4, -100, 2, 1, 3];
    let w: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 * 0.25).collect();
    let logp: Vec<f32> = ls::log_softmax(&x, c).iter().map(|&v| v as f32).collect();
    write(&p("x.npy"), &x, &[n, c]);
    write(&p("y.npy"), &y, &[n, c]);
    write(&p("probs.npy"), &probs, &[n, c]);
    write(&p("labels.npy"), &labels, &[n, c]);
    write(&p("t.npy"), &t, &[n]);
    write(&p("t32.npy"), &t.iter().map(|&v| v as i32).collect::<Vec<_>>(), &[n]);
    write(&p("w.npy"), &w, &[c]);
    write(&p("logp.npy"), &logp, &[n, c]);
    let (k, o) = (c, 4);
    let lw = rng.values(o * k, 1.0);
    let lb = rng.values(o, 1.0);
    write(&p("lw.npy"), &lw, &[o, k]);
    write(&p("lb.npy"), &lb, &[o]);
    let nc = (n * c) as f64;
    let ones = vec![1.0f32; n * c];
    let ones_rows = vec![1.0f32; n];
    let f = |path: &str| p(path).to_str().unwrap().to_owned();
    // (op, extra args, want eval, want grad)
    type Case = (&'static str, Vec<String>, Vec<f64>, Vec<f64>);
    let pw = |loss, a: &[f32], b: &[f32], red: Reduction| {
        let g: &[f32] = if red == Reduction::None { &ones } else { &[1.0] };
        (
            pointwise::forward(loss, a, b, c, None, None, red, nc),
            pointwise::backward(loss, a, b, c, None, None, g, red, nc).0,
        )
    };
    let mut cases: Vec<Case> = Vec::new();
    for (op, loss) in [("mse", Pointwise::Mse), ("l1", Pointwise::L1)] {
        let (e, g) = pw(loss, &x, &y, Reduction::Mean);
        cases.push((op, vec!["--input".into(), f("x.npy"), "--target".into(), f("y.npy")], e, g));
    }
    let (e, g) = pw(Pointwise::SmoothL1(0.5), &x, &y, Reduction::Sum);
    cases.push((
        "smooth-l1",
        vec![
            "--input".into(),
            f("x.npy"),
            "--target".into(),
            f("y.npy"),
            "--beta".into(),
            "0.5".into(),
            "--reduction".into(),
            "sum".into(),
        ],
        e,
        g,
    ));
    let (e, g) = pw(Pointwise::Huber(2.0), &x, &y, Reduction::None);
    cases.push((
        "huber",
        vec![
            "--input".into(),
            f("x.npy"),
            "--target".into(),
            f("y.npy"),
            "--delta".into(),
            "2".into(),
            "--reduction".into(),
            "none".into(),
        ],
        e,
        g,
    ));
    let (e, g) = pw(Pointwise::Bce, &probs, &labels, Reduction::Mean);
    cases.push(("bce", vec!["--input".into(), f("probs.npy"), "--target".into(), f("labels.npy")], e, g));
    {
        let e = pointwise::forward(
            Pointwise::BceWithLogits,
            &x,
            &labels,
            c,
            Some(&w),
            Some(&w),
            Reduction::Mean,
            nc,
        );
        let g = pointwise::backward(
            Pointwise::BceWithLogits,
            &x,
            &labels,
            c,
            Some(&w),
            Some(&w),
            &[1.0],
            Reduction::Mean,
            nc,
        )
        .0;
        let args = vec![
            "--input".into(),
            f("x.npy"),
            "--target".into(),
            f("labels.npy"),
            "--weight".into(),
            f("w.npy"),
            "--pos-weight".into(),
            f("w.npy"),
        ];
        cases.push(("bce-with-logits", args, e, g));
    }
    {
        // A pos_weight that varies along the rows (dim 0) and broadcasts along the columns.
        let rows: Vec<f32> = (0..n).map(|i| 0.5 + i as f32 * 0.5).collect();
        write(&p("pw_rows.npy"), &rows, &[n, 1]);
        let full = wgpu_loss::reference::broadcast_to(&rows, &[n, 1], &[n, c]).unwrap();
        let red = Reduction::Sum;
        let e = pointwise::forward(Pointwise::BceWithLogits, &x, &labels, c, None, Some(&full), red, nc);
        let g =
            pointwise::backward(Pointwise::BceWithLogits, &x, &labels, c, None, Some(&full), &[1.0], red, nc)
                .0;
        let args = vec![
            "--input".into(),
            f("x.npy"),
            "--target".into(),
            f("labels.npy"),
            "--pos-weight".into(),
            f("pw_rows.npy"),
            "--reduction".into(),
            "sum".into(),
        ];
        cases.push(("bce-with-logits", args, e, g));
    }
    {
        let args = vec![
            "--input".into(),
            f("x.npy"),
            "--target".into(),
            f("t.npy"),
            "--weight".into(),
            f("w.npy"),
            "--label-smoothing".into(),
            "0.1".into(),
            "--ignore-index".into(),
            "-100".into(),
        ];
        let e = ce::cross_entropy_nd(&x, &[n, c], &t, Some(&w), -100, 0.1, Reduction::Mean).unwrap();
        let g = ce::cross_entropy_backward(&x, &[n, c], &t, Some(&w), -100, 0.1, Reduction::Mean, &[1.0f32])
            .unwrap();
        cases.push(("cross-entropy", args, e, g));
        let args = vec![
            "--input".into(),
            f("x.npy"),
            "--target".into(),
            f("probs.npy"),
            "--reduction".into(),
            "none".into(),
        ];
        let e = ce::cross_entropy_probs(&x, &[n, c], &probs, None, 0.0, Reduction::None);
        let g =
            ce::cross_entropy_probs_backward(&x, &[n, c], &probs, None, 0.0, Reduction::None, &ones_rows).0;
        cases.push(("cross-entropy", args, e, g));
        let args = vec![
            "--input".into(),
            f("logp.npy"),
            "--target".into(),
            f("t32.npy"),
            "--reduction".into(),
            "sum".into(),
        ];
        let e = nll_ref::nll_nd(&logp, &[n, c], &t, None, -100, Reduction::Sum).unwrap();
        let g = nll_ref::nll_backward(&logp, &[n, c], &t, None, -100, Reduction::Sum, &[1.0f32]).unwrap();
        cases.push(("nll", args, e, g));
    }
    {
        let args = vec![
            "--input".into(),
            f("logp.npy"),
            "--target".into(),
            f("probs.npy"),
            "--reduction".into(),
            "batchmean".into(),
        ];
        let e = pointwise::forward(
            Pointwise::KlDiv(false),
            &logp,
            &probs,
            c,
            None,
            None,
            Reduction::Mean,
            n as f64,
        );
        let g = pointwise::backward(
            Pointwise::KlDiv(false),
            &logp,
            &probs,
            c,
            None,
            None,
            &[1.0],
            Reduction::Mean,
            n as f64,
        )
        .0;
        cases.push(("kl-div", args, e, g));
        let args =
            vec!["--input".into(), f("logp.npy"), "--target".into(), f("logp.npy"), "--log-target".into()];
        let e = pointwise::forward(Pointwise::KlDiv(true), &logp, &logp, c, None, None, Reduction::Mean, nc);
        let g = pointwise::backward(
            Pointwise::KlDiv(true),
            &logp,
            &logp,
            c,
            None,
            None,
            &[1.0],
            Reduction::Mean,
            nc,
        )
        .0;
        cases.push(("kl-div", args, e, g));
    }
    for dim in [-1isize, 0] {
        let d = dim.rem_euclid(2) as usize;
        let args = vec!["--input".into(), f("x.npy"), "--dim".into(), dim.to_string()];
        let y = ls::log_softmax_dim(&x, &[n, c], d);
        let y32: Vec<f32> = y.iter().map(|&v| v as f32).collect();
        cases.push(("log-softmax", args.clone(), y, ls::log_softmax_backward(&y32, &ones, &[n, c], d)));
        let s = ls::softmax_dim(&x, &[n, c], d);
        let s32: Vec<f32> = s.iter().map(|&v| v as f32).collect();
        cases.push(("softmax", args, s, ls::softmax_backward(&s32, &ones, &[n, c], d)));
    }
    {
        let args =
            vec!["--input".into(), f("x.npy"), "--weight".into(), f("lw.npy"), "--bias".into(), f("lb.npy")];
        let e = lin::linear(&x, &lw, Some(&lb), k);
        // d(Σ y)/dx[r, i] = Σ_j W[j, i]
        let col: Vec<f64> = (0..k).map(|i| (0..o).map(|j| lw[j * k + i] as f64).sum()).collect();
        let g: Vec<f64> = (0..n * k).map(|e| col[e % k]).collect();
        cases.push(("linear", args, e, g));
    }
    {
        // jsd with its defaults (β 0.5, T 1, batchmean), and β, T, labels (int32) and none.
        let (rows, jsd_ref) =
            (div::Rows { labels: None, ignore_index: -100, reduction: Reduction::Mean }, div::jsd);
        let e = jsd_ref(&x, &y, &[n, c], 0.5, 1.0, rows);
        let g = div::jsd_backward(&x, &y, &[n, c], 0.5, 1.0, rows, &[1.0f32]);
        cases.push(("jsd", vec!["--input".into(), f("x.npy"), "--target".into(), f("y.npy")], e, g));
        let rows = div::Rows { labels: Some(&t), ignore_index: -100, reduction: Reduction::None };
        let e = div::jsd(&x, &y, &[n, c], 0.0, 2.0, rows);
        let g = div::jsd_backward(&x, &y, &[n, c], 0.0, 2.0, rows, &ones_rows);
        let args = ["--input", &f("x.npy"), "--target", &f("y.npy"), "--beta", "0", "--temperature", "2"];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.extend(["--labels".into(), f("t32.npy"), "--reduction".into(), "none".into()]);
        cases.push(("jsd", args, e, g));
        let rows = div::Rows { labels: Some(&t), ignore_index: -100, reduction: Reduction::Sum };
        let e = div::tvd(&probs, &labels, &[n, c], rows);
        let g = div::tvd_backward(&probs, &labels, &[n, c], rows, &[1.0f32]);
        let args = ["--input", &f("probs.npy"), "--target", &f("labels.npy"), "--labels", &f("t.npy")];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.extend(["--reduction".into(), "sum".into()]);
        cases.push(("tvd", args, e, g));
    }
    {
        // torchvision's default reduction for sigmoid-focal is none; the others' options.
        let focal = Pointwise::SigmoidFocal { alpha: 0.25, gamma: 2.0 };
        let (e, g) = pw(focal, &x, &labels, Reduction::None);
        cases.push(("sigmoid-focal", strings(&["--input", &f("x.npy"), "--target", &f("labels.npy")]), e, g));
        let focal = Pointwise::SigmoidFocal { alpha: -1.0, gamma: 1.5 };
        let (e, g) = pw(focal, &x, &labels, Reduction::Mean);
        let args = ["--alpha", "-1", "--gamma", "1.5", "--reduction", "mean"];
        let mut a = strings(&["--input", &f("x.npy"), "--target", &f("labels.npy")]);
        a.extend(strings(&args));
        cases.push(("sigmoid-focal", a, e, g));
        let counts: Vec<f32> = labels.iter().zip(&probs).map(|(l, p)| l * 3.0 + p).collect();
        write(&p("counts.npy"), &counts, &[n, c]);
        let poisson = Pointwise::PoissonNll { log_input: false, full: true, eps: 0.5 };
        let (e, g) = pw(poisson, &probs, &counts, Reduction::Sum);
        let args = ["--no-log-input", "--full", "--eps", "0.5", "--reduction", "sum"];
        let mut a = strings(&["--input", &f("probs.npy"), "--target", &f("counts.npy")]);
        a.extend(strings(&args));
        cases.push(("poisson-nll", a, e, g));
        let poisson = Pointwise::PoissonNll { log_input: true, full: false, eps: 1e-8 };
        let (e, g) = pw(poisson, &x, &counts, Reduction::Mean);
        cases.push(("poisson-nll", strings(&["--input", &f("x.npy"), "--target", &f("counts.npy")]), e, g));
        let signs: Vec<f32> = labels.iter().map(|l| 2.0 * l - 1.0).collect();
        write(&p("signs.npy"), &signs, &[n, c]);
        let (e, g) = pw(Pointwise::HingeEmbedding(0.5), &x, &signs, Reduction::Mean);
        let args = ["--input", &f("x.npy"), "--target", &f("signs.npy"), "--margin", "0.5"];
        cases.push(("hinge-embedding", strings(&args), e, g));
        // gaussian-nll with one variance per row (PyTorch unsqueezes it), full, eps.
        let var: Vec<f32> = (0..n).map(|r| 0.1 + 0.3 * r as f32).collect();
        write(&p("var.npy"), &var, &[n]);
        let aux: Vec<f32> = (0..n * c).map(|e| var[e / c]).collect();
        let gauss = Pointwise::GaussianNll { full: true, eps: 0.2 };
        let e = pointwise::forward(gauss, &x, &y, c, None, Some(&aux), Reduction::Sum, nc);
        let g = pointwise::backward(gauss, &x, &y, c, None, Some(&aux), &[1.0], Reduction::Sum, nc).0;
        let args = ["--var", &f("var.npy"), "--full", "--eps", "0.2", "--reduction", "sum"];
        let mut a = strings(&["--input", &f("x.npy"), "--target", &f("y.npy")]);
        a.extend(strings(&args));
        cases.push(("gaussian-nll", a, e, g));
        // margin-ranking: input2 and ±1 targets.
        let rank = Pointwise::MarginRanking(0.25);
        let e = pointwise::forward(rank, &x, &y, c, None, Some(&signs), Reduction::Mean, nc);
        let g = pointwise::backward(rank, &x, &y, c, None, Some(&signs), &[1.0], Reduction::Mean, nc).0;
        let args = ["--input2", &f("y.npy"), "--target", &f("signs.npy"), "--margin", "0.25"];
        let mut a = strings(&["--input", &f("x.npy")]);
        a.extend(strings(&args));
        cases.push(("margin-ranking", a, e, g));
        // multi-margin (p 2, margin, class weights) and multilabel-soft-margin.
        let cw: Vec<f32> = (0..c).map(|k| 0.5 + k as f32 * 0.25).collect();
        write(&p("cw.npy"), &cw, &[c]);
        let tm: Vec<i64> = t.iter().map(|&v| v.max(0)).collect();
        write(&p("tm.npy"), &tm, &[n]);
        let e = cm::multi_margin(&x, c, &tm, 2, 0.5, Some(&cw), Reduction::Sum).unwrap();
        let g = cm::multi_margin_backward(&x, c, &tm, 2, 0.5, Some(&cw), &[1.0f32], Reduction::Sum).unwrap();
        let args = ["--target", &f("tm.npy"), "--p", "2", "--margin", "0.5", "--weight", &f("cw.npy")];
        let mut a = strings(&["--input", &f("x.npy"), "--reduction", "sum"]);
        a.extend(strings(&args));
        cases.push(("multi-margin", a, e, g));
        let e = cm::multilabel_soft_margin(&x, &probs, c, None, Reduction::Mean);
        let g = cm::multilabel_soft_margin_backward(&x, &probs, c, None, &[1.0f32], Reduction::Mean);
        cases.push((
            "multilabel-soft-margin",
            strings(&["--input", &f("x.npy"), "--target", &f("probs.npy")]),
            e,
            g,
        ));
        // cosine-embedding (±1 per row, margin) and triplet-margin (p 1, swap).
        let (x64, y64, p64): (Vec<f64>, Vec<f64>, Vec<f64>) = (
            x.iter().map(|&v| v as f64).collect(),
            y.iter().map(|&v| v as f64).collect(),
            probs.iter().map(|&v| v as f64).collect(),
        );
        let rs: Vec<f32> = (0..n).map(|r| if r % 2 == 0 { 1.0 } else { -1.0 }).collect();
        write(&p("rs.npy"), &rs, &[n]);
        let rs64: Vec<f64> = rs.iter().map(|&v| v as f64).collect();
        let e = er::cosine_embedding(&x64, &y64, c, &rs64, -0.2, Reduction::Sum);
        let g = er::cosine_embedding_backward(&x64, &y64, c, &rs64, -0.2, &[1.0], Reduction::Sum).0;
        let args =
            ["--input2", &f("y.npy"), "--target", &f("rs.npy"), "--margin", "-0.2", "--reduction", "sum"];
        let mut a = strings(&["--input", &f("x.npy")]);
        a.extend(strings(&args));
        cases.push(("cosine-embedding", a, e, g));
        let o = er::Triplet { margin: 1.0, p: 1.0, eps: 1e-6, swap: true };
        let e = er::triplet_margin(&x64, &y64, &p64, c, o, Reduction::Mean);
        let g = er::triplet_margin_backward(&x64, &y64, &p64, c, o, &[1.0], Reduction::Mean).0;
        let args = ["--input2", &f("y.npy"), "--input3", &f("probs.npy"), "--p", "1", "--swap"];
        let mut a = strings(&["--input", &f("x.npy")]);
        a.extend(strings(&args));
        cases.push(("triplet-margin", a, e, g));
        // ctc on one unbatched sequence: log-probs (T, C) = (6, 5), targets (S), 0-d lengths,
        // blank 4, summed.
        let ct: Vec<i64> = vec![1, 1, 3];
        write(&p("ct.npy"), &ct, &[3]);
        write(&p("il.npy"), &[6i64], &[]);
        write(&p("tl.npy"), &[3i32], &[]);
        let lp64: Vec<f64> = logp.iter().map(|&v| v as f64).collect();
        let seq = [ctc_ref::Sequence { input_length: 6, targets: &ct }];
        let e = ctc_ref::ctc(&lp64, (1, c), &seq, 4, false, Reduction::Sum);
        let g = ctc_ref::ctc_backward(&lp64, (1, c), &seq, 4, false, &[1.0], Reduction::Sum);
        let args = ["--input-lengths", &f("il.npy"), "--target-lengths", &f("tl.npy"), "--blank", "4"];
        let mut a = strings(&["--input", &f("logp.npy"), "--target", &f("ct.npy"), "--reduction", "sum"]);
        a.extend(strings(&args));
        cases.push(("ctc", a, e, g));
        // multilabel-margin: listed targets up to -1 (int32), a repeat in row 0.
        let mlt: Vec<i32> = (0..n * c)
            .map(|e| match e % c {
                0 => (e / c % c) as i32,
                1 => (e / c % c) as i32,
                2 => -1,
                k => k as i32,
            })
            .collect();
        write(&p("mlt.npy"), &mlt, &[n, c]);
        let mlt64: Vec<i64> = mlt.iter().map(|&v| v as i64).collect();
        let e = cm::multilabel_margin(&x, &mlt64, c, Reduction::Mean).unwrap();
        let g = cm::multilabel_margin_backward(&x, &mlt64, c, &[1.0f32], Reduction::Mean).unwrap();
        cases.push((
            "multilabel-margin",
            strings(&["--input", &f("x.npy"), "--target", &f("mlt.npy")]),
            e,
            g,
        ));
    }
    // Every (adapter, case, command) as one invocation of the binary; they run side by side.
    let mut jobs = Vec::new();
    for be in backends() {
        for (i, (op, args, want_eval, want_grad)) in cases.iter().enumerate() {
            for (cmd, want) in [("eval", want_eval), ("grad", want_grad)] {
                // Named by the case's index too: an op comes in several cases.
                let out_path = dir.join(format!("{be}-{i}-{op}-{cmd}.npy"));
                let mut line: Vec<String> = strings(&[cmd, op]);
                line.extend(args.iter().cloned());
                line.extend(strings(&["--backend", be, "--output", out_path.to_str().unwrap()]));
                jobs.push((line, (be, *op, cmd, want, out_path)));
            }
        }
    }
    let outputs = cli_all(jobs.iter().map(|(line, _)| line.clone()).collect());
    for (out, (line, (be, op, cmd, want, out_path))) in outputs.iter().zip(&jobs) {
        let what = format!("{be} {cmd} {op} {line:?}");
        ok(out, &what);
        let (got, shape) = read(out_path);
        if *cmd == "grad" {
            assert_eq!(shape, if *op == "linear" { vec![n, k] } else { vec![n, c] }, "{what}");
        }
        assert_close(&what, &got, want, Tol::scaled(3.0).sum(n * c));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs a command that must fail: non-zero exit, a message containing `needle`, no output file
/// and nothing else left in the directory.
fn fails(dir: &Path, args: &[&str], needle: &str) {
    let before: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    let out = cli(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(stderr.contains(needle), "{args:?}: stderr {stderr:?} does not mention {needle:?}");
    assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: one message, got {stderr:?}");
    let after: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before, after, "{args:?} left files behind");
}

#[test]
fn errors_exit_non_zero_with_one_message_and_write_nothing() {
    let dir = scratch("errors");
    let p = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    write(Path::new(&p("x.npy")), &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    write(Path::new(&p("xt.npy")), &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
    write(Path::new(&p("x64.npy")), &[1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    write(Path::new(&p("t.npy")), &[0i64, 7], &[2]);
    write(Path::new(&p("tok.npy")), &[0i64, 2], &[2]);
    write(Path::new(&p("tf.npy")), &[0.0f32, 2.0], &[2]);
    write(Path::new(&p("bad_p.npy")), &[0.5f32, 1.5, 0.2, 0.1, 0.0, 1.0], &[2, 3]);
    write(Path::new(&p("ti.npy")), &[0i64, 1, 0, 1, 0, 1], &[2, 3]);
    std::fs::write(p("corrupt.npy"), b"this is not an npy file").unwrap();
    let full = std::fs::read(p("x.npy")).unwrap();
    std::fs::write(p("short.npy"), &full[..full.len() - 8]).unwrap();
    let out = p("out.npy");
    let o = out.as_str();
    fails(
        &dir,
        &["eval", "cross-entropy", "--input", &p("x.npy"), "--target", &p("t.npy"), "--output", o],
        "out of range",
    );
    fails(&dir, &["eval", "mse", "--input", &p("x.npy"), "--target", &p("xt.npy"), "--output", o], "shape");
    fails(
        &dir,
        &["eval", "mse", "--input", &p("x64.npy"), "--target", &p("x.npy"), "--output", o],
        "--input",
    );
    fails(
        &dir,
        &["eval", "nll", "--input", &p("x.npy"), "--target", &p("tf.npy"), "--output", o],
        "--target",
    );
    fails(
        &dir,
        &["grad", "bce", "--input", &p("x.npy"), "--target", &p("ti.npy"), "--output", o],
        "--target",
    );
    fails(&dir, &["eval", "mse", "--input", &p("x.npy"), "--output", o], "--target");
    fails(
        &dir,
        &["eval", "mse", "--input", &p("missing.npy"), "--target", &p("x.npy"), "--output", o],
        "missing.npy",
    );
    fails(&dir, &["eval", "log-softmax", "--input", &p("x.npy"), "--dim", "2", "--output", o], "dim");
    fails(&dir, &["eval", "log-softmax", "--input", &p("x.npy"), "--dim", "-3", "--output", o], "dim");
    fails(
        &dir,
        &[
            "eval",
            "mse",
            "--input",
            &p("x.npy"),
            "--target",
            &p("x.npy"),
            "--reduction",
            "batchmean",
            "--output",
            o,
        ],
        "batchmean",
    );
    let ls = [
        "eval",
        "cross-entropy",
        "--input",
        &p("x.npy"),
        "--target",
        &p("tok.npy"),
        "--label-smoothing",
        "1.5",
        "--output",
        o,
    ];
    fails(&dir, &ls, "label_smoothing");
    fails(
        &dir,
        &["eval", "bce", "--input", &p("bad_p.npy"), "--target", &p("bad_p.npy"), "--output", o],
        "[0, 1]",
    );
    fails(
        &dir,
        &["eval", "mse", "--input", &p("corrupt.npy"), "--target", &p("x.npy"), "--output", o],
        "corrupt.npy",
    );
    fails(
        &dir,
        &["eval", "mse", "--input", &p("short.npy"), "--target", &p("x.npy"), "--output", o],
        "short.npy",
    );
    // A --pos-weight of [2] for an input [2, 3]: its last dim is neither 1 nor 3.
    write(Path::new(&p("pw2.npy")), &[1.0f32, 2.0], &[2]);
    fails(
        &dir,
        &[
            "eval",
            "bce-with-logits",
            "--input",
            &p("x.npy"),
            "--target",
            &p("bad_p.npy"),
            "--pos-weight",
            &p("pw2.npy"),
            "--output",
            o,
        ],
        "--pos-weight",
    );
    let x_path = p("x.npy");
    let jsd = |extra: &[&str]| {
        let mut a = vec!["eval", "jsd", "--input", &x_path, "--target", &x_path, "--output", o];
        a.extend_from_slice(extra);
        a.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>, needle| fails(&dir, &a.iter().map(String::as_str).collect::<Vec<_>>(), needle);
    run(jsd(&["--beta", "1.5"]), "beta");
    run(jsd(&["--temperature", "0"]), "temperature");
    run(jsd(&["--labels", &p("tf.npy")]), "--labels");
    run(jsd(&["--labels", &p("x.npy")]), "labels");
    fails(&dir, &["eval", "jsd", "--input", &p("x.npy"), "--target", &p("xt.npy"), "--output", o], "shape");
    fails(
        &dir,
        &[
            "eval",
            "mse",
            "--input",
            &p("x.npy"),
            "--target",
            &p("x.npy"),
            "--labels",
            &p("tok.npy"),
            "--output",
            o,
        ],
        "--labels is only for jsd, tvd",
    );
    // Operands: required by the ops that take them, refused by the others, checked.
    write(Path::new(&p("neg_var.npy")), &[1.0f32, 1.0, -0.5, 1.0, 1.0, 1.0], &[2, 3]);
    write(Path::new(&p("var3.npy")), &[1.0f32, 1.0, 1.0], &[3]);
    let gauss = |var: &str| {
        ["eval", "gaussian-nll", "--input", &x_path, "--target", &x_path, "--var", var, "--output", o]
            .map(str::to_owned)
            .to_vec()
    };
    // The variance is named as such (not "input").
    run(gauss(&p("neg_var.npy")), "gaussian_nll: var -0.5 at position 2 is outside [0, inf)");
    run(gauss(&p("var3.npy")), "var [3] is of incorrect size");
    run(gauss(&p("ti.npy")), "--var");
    fails(
        &dir,
        &["eval", "gaussian-nll", "--input", &x_path, "--target", &x_path, "--output", o],
        "--var FILE is required",
    );
    fails(
        &dir,
        &["eval", "mse", "--input", &x_path, "--target", &x_path, "--var", &x_path, "--output", o],
        "--var is only for gaussian-nll",
    );
    fails(
        &dir,
        &[
            "eval",
            "margin-ranking",
            "--input",
            &x_path,
            "--input2",
            &p("xt.npy"),
            "--target",
            &x_path,
            "--output",
            o,
        ],
        "--input2",
    );
    fails(
        &dir,
        &[
            "eval",
            "margin-ranking",
            "--input",
            &x_path,
            "--input2",
            &p("x64.npy"),
            "--target",
            &x_path,
            "--output",
            o,
        ],
        "--input2",
    );
    fails(
        &dir,
        &[
            "eval",
            "margin-ranking",
            "--input",
            &x_path,
            "--input2",
            &x_path,
            "--target",
            &p("ti.npy"),
            "--output",
            o,
        ],
        "got integer",
    );
    // multi-margin: p other than 1 or 2, a target out of range, float targets.
    fails(
        &dir,
        &["eval", "multi-margin", "--input", &x_path, "--target", &p("tok.npy"), "--p", "3", "--output", o],
        "p == 1 and p == 2",
    );
    fails(
        &dir,
        &["eval", "multi-margin", "--input", &x_path, "--target", &p("t.npy"), "--output", o],
        "out of range for 3 classes",
    );
    fails(
        &dir,
        &["eval", "multi-margin", "--input", &x_path, "--target", &p("tf.npy"), "--output", o],
        "class ids",
    );
    fails(
        &dir,
        &["eval", "multilabel-soft-margin", "--input", &x_path, "--target", &p("ti.npy"), "--output", o],
        "got integer",
    );
    // triplet-margin: a margin that is not > 0, a missing negative; cosine's targets per row.
    let t3 = |extra: &[&str]| {
        let mut a = vec!["eval", "triplet-margin", "--input", &x_path, "--input2", &x_path, "--output", o];
        a.extend_from_slice(extra);
        a.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    run(t3(&["--input3", &x_path, "--margin", "0"]), "margin must be greater than 0");
    run(t3(&[]), "--input3 FILE is required");
    let cos = [
        "eval",
        "cosine-embedding",
        "--input",
        &x_path,
        "--input2",
        &x_path,
        "--target",
        &x_path,
        "--output",
        o,
    ];
    fails(&dir, &cos, "target [2, 3] must hold one value per row");
    // ctc: lengths required, integer, within T; refused by other ops.
    write(Path::new(&p("il9.npy")), &[9i64], &[]);
    write(Path::new(&p("tl2.npy")), &[2i64], &[]);
    write(Path::new(&p("ilf.npy")), &[2.0f32], &[]);
    let tok = p("tok.npy");
    let ctc = |extra: &[&str]| {
        let mut a = vec!["eval", "ctc", "--input", &x_path, "--target", &tok, "--output", o];
        a.extend_from_slice(extra);
        a.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    run(ctc(&["--target-lengths", &p("tl2.npy")]), "--input-lengths FILE is required");
    run(
        ctc(&["--input-lengths", &p("ilf.npy"), "--target-lengths", &p("tl2.npy")]),
        "int64 or int32 lengths",
    );
    run(ctc(&["--input-lengths", &p("il9.npy"), "--target-lengths", &p("tl2.npy")]), "input_lengths[0] = 9");
    run(
        ctc(&["--input-lengths", &p("tl2.npy"), "--target-lengths", &p("tl2.npy"), "--blank", "3"]),
        "blank 3",
    );
    fails(
        &dir,
        &[
            "eval",
            "mse",
            "--input",
            &x_path,
            "--target",
            &x_path,
            "--input-lengths",
            &p("il9.npy"),
            "--output",
            o,
        ],
        "--input-lengths is only for ctc",
    );
    // multilabel-margin: a target outside [-1, C), float targets.
    write(Path::new(&p("mlbad.npy")), &[0i64, 3, -1, 1, -1, 0], &[2, 3]);
    fails(
        &dir,
        &["eval", "multilabel-margin", "--input", &x_path, "--target", &p("mlbad.npy"), "--output", o],
        "target 3 at position 1",
    );
    fails(
        &dir,
        &["eval", "multilabel-margin", "--input", &x_path, "--target", &x_path, "--output", o],
        "class ids",
    );
    // A failing run leaves an existing output untouched.
    std::fs::write(&out, b"keep").unwrap();
    let out_run =
        cli(&["eval", "cross-entropy", "--input", &p("x.npy"), "--target", &p("t.npy"), "--output", o]);
    assert!(!out_run.status.success());
    assert_eq!(std::fs::read(&out).unwrap(), b"keep");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn info_lists_every_adapter() {
    let out = cli(&["info", "--json"]);
    ok(&out, "info --json");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), wgpu_loss::Device::adapters(None, None).len());
    for a in list {
        for key in [
            "name",
            "backend",
            "device_type",
            "driver",
            "max_storage_buffer_binding_size",
            "subgroups",
            "shader_f16",
            "timestamp_query",
        ] {
            assert!(a.get(key).is_some(), "info --json lacks {key}: {a}");
        }
    }
    let text = cli(&["info"]);
    ok(&text, "info");
    assert!(String::from_utf8_lossy(&text.stdout).contains("storage binding"));
}

#[test]
fn bench_quick_json_is_complete_and_compare_merges_reports() {
    let dir = scratch("bench");
    let mut files = Vec::new();
    // Each adapter's run in a process of its own, side by side.
    let json = |be: &str| dir.join(format!("{be}.json"));
    let lines = backends()
        .into_iter()
        .map(|be| {
            let path = json(be);
            strings(&[
                "bench",
                "--quick",
                "--dtypes",
                "f32,bf16",
                "--backend",
                be,
                "--json",
                path.to_str().unwrap(),
            ])
        })
        .collect();
    for (be, out) in backends().into_iter().zip(cli_all(lines)) {
        let path = json(be);
        ok(&out, &format!("bench --quick --backend {be}"));
        let reports: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let r = &reports.as_array().unwrap()[0];
        for key in ["version", "git_revision", "date", "timing", "adapter", "yardsticks", "cases"] {
            assert!(r.get(key).is_some(), "report lacks {key}");
        }
        let cases = r["cases"].as_array().unwrap();
        for kernel in [
            "cross_entropy",
            "log_softmax",
            "softmax",
            "nll",
            "mse",
            "l1",
            "smooth_l1",
            "huber",
            "bce",
            "bce_with_logits",
            "kl_div",
            "jsd",
            "tvd",
            "linear",
            "linear_jsd",
            "linear+jsd",
        ] {
            for dtype in ["f32", "bf16"] {
                let found = cases.iter().any(|c| c["kernel"] == kernel && c["dtype"] == dtype);
                assert!(found, "{be}: no {kernel} case in {dtype}");
            }
        }
        for c in cases.iter().chain(r["yardsticks"].as_array().unwrap()) {
            assert_eq!(c["status"], "ok", "{be}: {c}");
            assert!(c["median_ms"].as_f64().unwrap() > 0.0, "{be}: {c}");
            assert!(c["min_ms"].as_f64().unwrap() <= c["median_ms"].as_f64().unwrap());
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("cross_entropy") && stdout.contains("read_sum"), "table on stdout");
        files.push(path);
    }
    let chart = dir.join("chart.svg");
    let mut args = vec!["compare".to_owned()];
    args.extend(files.iter().map(|f| f.to_str().unwrap().to_owned()));
    args.extend(["--chart".to_owned(), chart.to_str().unwrap().to_owned()]);
    let out = cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    ok(&out, "compare");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("| kernel | direction | shape |"), "{table}");
    assert_eq!(table.lines().next().unwrap().matches(" |").count(), 3 + files.len());
    assert!(std::fs::read_to_string(&chart).unwrap().contains("<svg"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `eval mse` of two small arrays in `dir`, writing to `output`.
fn mse_to(dir: &Path, output: &str) -> Output {
    let (x, y) = (dir.join("x.npy"), dir.join("y.npy"));
    write(&x, &[1.0f32, 2.0, 3.0], &[3]);
    write(&y, &[0.0f32, 2.0, 5.0], &[3]);
    cli(&["eval", "mse", "--input", x.to_str().unwrap(), "--target", y.to_str().unwrap(), "--output", output])
}

#[test]
fn special_outputs_are_written_through_and_links_followed() {
    use std::os::unix::fs::FileTypeExt;
    let dir = scratch("outputs");
    // A device node stays a device node.
    ok(&mse_to(&dir, "/dev/null"), "--output /dev/null");
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device(), "/dev/null was replaced");
    // A symbolic link stays a link; its target gets the result.
    let target = dir.join("target.npy");
    std::fs::write(&target, b"old").unwrap();
    let link = dir.join("link.npy");
    std::os::unix::fs::symlink("target.npy", &link).unwrap();
    ok(&mse_to(&dir, link.to_str().unwrap()), "--output link");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
    assert_eq!(read(&target), (vec![5.0 / 3.0], vec![]));
    // A dangling link: its target is created.
    let dangling = dir.join("dangling.npy");
    std::os::unix::fs::symlink("created.npy", &dangling).unwrap();
    ok(&mse_to(&dir, dangling.to_str().unwrap()), "--output dangling link");
    assert!(std::fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
    assert_eq!(read(&dir.join("created.npy")).0, [5.0 / 3.0]);
    // A FIFO stays a FIFO; its reader gets a whole .npy file.
    let fifo = dir.join("fifo.npy");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    ok(&mse_to(&dir, fifo.to_str().unwrap()), "--output fifo");
    let bytes = reader.join().unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(npy.into_vec::<f32>().unwrap(), [5.0 / 3.0]);
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO was replaced");
    // A directory is an error.
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let out = mse_to(&dir, sub.to_str().unwrap());
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("is a directory"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_message_without_a_runtime_dir_and_without_doubled_prefixes() {
    let dir = scratch("one-message");
    let (x, t) = (dir.join("x.npy"), dir.join("t.npy"));
    write(&x, &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    write(&t, &[0i64, 7], &[2]);
    for be in backends() {
        let out = Command::new(env!("CARGO_BIN_EXE_wgpu-loss"))
            .env_remove("XDG_RUNTIME_DIR")
            .args(["eval", "cross-entropy", "--backend", be, "--input", x.to_str().unwrap()])
            .args(["--target", t.to_str().unwrap(), "--output", dir.join("o.npy").to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{be}");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{be}: one message without XDG_RUNTIME_DIR, got {stderr:?}"
        );
        assert!(
            stderr.contains("out of range") && !stderr.contains("cross-entropy: cross_entropy"),
            "{be}: {stderr}"
        );
    }
    // Malformed headers: one line each.
    let good = std::fs::read(&x).unwrap();
    let text_end = good.iter().position(|&b| b == b'\n').unwrap();
    for (name, header) in [
        ("no_dict.npy", "'descr': '<f4'"),
        ("bad_shape.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }"),
        ("bad_descr.npy", "{'descr': 5, 'fortran_order': False, 'shape': (6,), }"),
        ("no_order.npy", "{'descr': '<f4', 'shape': (6,), }"),
    ] {
        let mut text = header.as_bytes().to_vec();
        text.resize(text_end - 10, b' ');
        let mut bytes = good[..10].to_vec();
        bytes.extend(&text);
        bytes.push(b'\n');
        bytes.extend(&good[text_end + 1..]);
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = cli(&["eval", "softmax", "--input", path.to_str().unwrap(), "--output", "/dev/null"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(name), "{name}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{name}: one message, got {stderr:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes `values` rounded to `dtype` as numpy saves them (`<f2`, or `<V2` for bfloat16).
fn write_half(path: &Path, values: &[f32], shape: &[usize], dtype: DType) {
    let bits: Vec<u16> =
        dtype.encode(values).chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
    npy::write(path, &npy::Values::Half(&bits, dtype), shape).unwrap();
}

/// Any float `.npy` (f32, f16, bf16) as f32 values, shape and element type.
fn read_any(path: &Path) -> (Vec<f32>, Vec<usize>, DType) {
    match npy::read("--output", path).unwrap() {
        npy::Array::Float(v, s, d) => (v, s, d),
        npy::Array::Ids(..) => panic!("{}: integers", path.display()),
    }
}

/// float16 and bfloat16 files in every float role, each its own type: `eval` writes float32
/// computed from the rounded inputs, `grad` the input's type (or float32 with `--grad-dtype
/// f32`); float64 and other void types are one clear message.
#[test]
fn half_precision_files_in_and_out() {
    let dir = scratch("half");
    let p = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let mut rng = Rng::new(61);
    let (n, c) = (6, 5);
    let x = rng.values(n * c, 3.0);
    let y = rng.values(n * c, 3.0);
    let t: Vec<i64> = vec![0, 4, -100, 2, 1, 3];
    write_half(Path::new(&p("x_bf16.npy")), &x, &[n, c], DType::BF16);
    write_half(Path::new(&p("x_f16.npy")), &x, &[n, c], DType::F16);
    write_half(Path::new(&p("y_bf16.npy")), &y, &[n, c], DType::BF16);
    write(Path::new(&p("t.npy")), &t, &[n]);
    let xb: Vec<f32> = x.iter().map(|&v| DType::BF16.round(v)).collect();
    let xh: Vec<f32> = x.iter().map(|&v| DType::F16.round(v)).collect();
    let yb: Vec<f32> = y.iter().map(|&v| DType::BF16.round(v)).collect();
    let ce_loss = ce::cross_entropy_nd(&xb, &[n, c], &t, None, -100, 0.0, Reduction::Mean).unwrap();
    let ce_grad =
        ce::cross_entropy_backward(&xb, &[n, c], &t, None, -100, 0.0, Reduction::Mean, &[1.0f32]).unwrap();
    let nc = (n * c) as f64;
    let mse = pointwise::forward(Pointwise::Mse, &xh, &yb, c, None, None, Reduction::Mean, nc);
    let mse_grad =
        pointwise::backward(Pointwise::Mse, &xh, &yb, c, None, None, &[1.0], Reduction::Mean, nc).0;
    let bf16_grad = Tol { abs: 1e-6, rel: 2f64.powi(-8) };
    let f16_grad = Tol { abs: 1e-6, rel: 2f64.powi(-11) };
    for backend in backends() {
        let o = p("out.npy");
        let run = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend(["--backend", backend, "--output", &o]);
            ok(&cli(&all), &format!("{args:?} on {backend}"));
            read_any(Path::new(&o))
        };
        let ce_args = ["cross-entropy", "--input", &p("x_bf16.npy"), "--target", &p("t.npy")];
        let (v, s, d) = run(&[&["eval"][..], &ce_args].concat());
        assert_eq!((s.as_slice(), d), (&[][..], DType::F32), "eval writes float32");
        assert_close(&format!("{backend} ce bf16 eval"), &v, &ce_loss, Tol::ELEMENT);
        let (v, s, d) = run(&[&["grad"][..], &ce_args].concat());
        assert_eq!((s.as_slice(), d), (&[n, c][..], DType::BF16), "grad writes the input's type");
        assert_close(&format!("{backend} ce bf16 grad"), &v, &ce_grad, bf16_grad);
        let (v, _, d) = run(&[&["grad"][..], &ce_args, &["--grad-dtype", "f32"]].concat());
        assert_eq!(d, DType::F32);
        assert_close(&format!("{backend} ce grad f32"), &v, &ce_grad, Tol::ELEMENT);
        // Mixed: an f16 input and a bf16 target.
        let mse_args = ["mse", "--input", &p("x_f16.npy"), "--target", &p("y_bf16.npy")];
        let (v, _, d) = run(&[&["eval"][..], &mse_args].concat());
        assert_eq!(d, DType::F32);
        assert_close(&format!("{backend} mse mixed eval"), &v, &mse, Tol::ELEMENT.sum(n * c));
        let (v, _, d) = run(&[&["grad"][..], &mse_args].concat());
        assert_eq!(d, DType::F16);
        assert_close(&format!("{backend} mse mixed grad"), &v, &mse_grad, f16_grad);
        // log-softmax's and linear's eval outputs are float32 whatever the input.
        let (v, s, d) = run(&["eval", "log-softmax", "--input", &p("x_f16.npy")]);
        assert_eq!((s.as_slice(), d), (&[n, c][..], DType::F32));
        assert_close(&format!("{backend} log-softmax f16"), &v, &ls::log_softmax(&xh, c), Tol::ELEMENT);
        // Its f16 grad is PyTorch's: taken at the f16 output, the f32 one above rounded once.
        let y16: Vec<f32> = v.iter().map(|&y| DType::F16.round(y)).collect();
        let want = ls::log_softmax_backward(&y16, &vec![1.0f32; n * c], &[n, c], 1);
        let (v, s, d) = run(&["grad", "log-softmax", "--input", &p("x_f16.npy")]);
        assert_eq!((s.as_slice(), d), (&[n, c][..], DType::F16));
        assert_close(&format!("{backend} log-softmax f16 grad"), &v, &want, f16_grad);
        let (v, s, d) = run(&["eval", "linear", "--input", &p("x_bf16.npy"), "--weight", &p("y_bf16.npy")]);
        assert_eq!((s.as_slice(), d), (&[n, n][..], DType::F32), "linear's eval writes float32");
        assert_close(
            &format!("{backend} linear bf16"),
            &v,
            &lin::linear(&f64s(&xb), &f64s(&yb), None, c),
            Tol::scaled(30.0),
        );
    }
    // float64, and a void type that is not bfloat16: one message each, nothing written.
    write(Path::new(&p("x64.npy")), &x.iter().map(|&v| v as f64).collect::<Vec<_>>(), &[n, c]);
    let o = p("out2.npy");
    fails(
        &dir,
        &["eval", "mse", "--input", &p("x64.npy"), "--target", &p("x_f16.npy"), "--output", &o],
        "float64",
    );
    let mut v4 = std::fs::read(p("x_bf16.npy")).unwrap();
    let at = v4.windows(3).position(|w| w == b"<V2").unwrap();
    v4[at + 2] = b'4';
    std::fs::write(p("x_v4.npy"), &v4).unwrap();
    fails(
        &dir,
        &["eval", "mse", "--input", &p("x_v4.npy"), "--target", &p("x_f16.npy"), "--output", &o],
        "V4",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The .npy files of one call's host data in `dir`, each with the flag that passes it.
fn call_files(dir: &Path, tag: &str, a: &wgpu_loss::catalogue::Args) -> Vec<(&'static str, String)> {
    use wgpu_loss::catalogue::{Array, Ids, Target};
    let mut out = Vec::new();
    let mut floats = |flag: &'static str, v: &Option<Array>| {
        if let Some(v) = v {
            let path = dir.join(format!("{tag}{flag}.npy"));
            write(&path, &v.f32s(), &v.shape);
            out.push((flag, path.to_str().unwrap().to_owned()));
        }
    };
    floats("--input", &Some(a.input.clone()));
    floats("--weight", &a.weight);
    floats("--bias", &a.bias);
    floats("--pos-weight", &a.pos_weight);
    floats("--input2", &a.input2);
    floats("--input3", &a.input3);
    floats("--var", &a.var);
    if let Some(Target::Values(v)) = &a.target {
        floats("--target", &Some(v.clone()));
    }
    let mut ids = |flag: &'static str, v: Option<&Ids>| {
        if let Some(v) = v {
            let path = dir.join(format!("{tag}{flag}.npy"));
            write(&path, &v.data, &v.shape);
            out.push((flag, path.to_str().unwrap().to_owned()));
        }
    };
    if let Some(Target::Ids { data, shape }) = &a.target {
        ids("--target", Some(&Ids { data: data.clone(), shape: shape.clone() }));
    }
    ids("--labels", a.labels.as_ref());
    ids("--input-lengths", a.input_lengths.as_ref());
    ids("--target-lengths", a.target_lengths.as_ref());
    out
}

/// A valid value of each scalar flag for the ops that read it.
fn flag_value(flag: &str, loss: &wgpu_loss::catalogue::Loss) -> Option<String> {
    let v = match flag {
        "--reduction" => loss.default_reduction.name(),
        "--ignore-index" => "-100",
        "--label-smoothing" => "0.1",
        "--beta" => "0.5",
        "--temperature" => "1.5",
        "--delta" => "1.5",
        "--alpha" => "0.5",
        "--gamma" => "1",
        "--margin" => "0.5",
        "--eps" => "1e-6",
        "--p" => "2",
        "--blank" => "0",
        "--dim" => "-1",
        _ => return None,
    };
    Some(v.to_owned())
}

/// The switches, which take no value.
const SWITCHES: &[&str] = &["--no-log-input", "--full", "--swap", "--zero-infinity", "--log-target"];

/// Every op × every option flag, in-process through the parser and `Job::load` (no device): a
/// flag the op reads is accepted, any other refused with one line naming the flag and the op,
/// never silently dropped. Each op's files come from its catalogue entry; a file flag it reads
/// but its default call lacks comes from a variant that has it.
#[test]
fn every_op_accepts_the_flags_it_reads_and_refuses_the_others() {
    use wgpu_loss::catalogue::{LOSSES, Variant};
    use wgpu_loss::cli::{Command, eval, parse};
    let dir = scratch("flags");
    let (mut accepted, mut refused) = (0, 0);
    for loss in LOSSES {
        let op = loss.cli_name();
        let sample = |v: &Variant| loss.sample(7, loss.test_shapes[0], v, loss.default_reduction);
        let base = call_files(&dir, &op, &sample(&loss.variants[0]));
        let out = dir.join("out.npy").to_str().unwrap().to_owned();
        let load = |extra: &[String], grad: bool| {
            let mut line: Vec<String> =
                vec!["wgpu-loss".into(), if grad { "grad" } else { "eval" }.into(), op.clone()];
            for (flag, path) in &base {
                line.extend([flag.to_string(), path.clone()]);
            }
            line.extend(extra.iter().cloned());
            line.extend(["--output".to_owned(), out.clone()]);
            let cli = parse(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            let (Command::Eval(a) | Command::Grad(a)) = &cli.command else { unreachable!() };
            (line.clone(), eval::Job::load(a, grad).map(|_| ()))
        };
        let (line, base_load) = load(&[], false);
        assert!(base_load.is_ok(), "{line:?}: {:?}", base_load.err());
        for &(flag, reads) in eval::OP_FLAGS {
            if base.iter().any(|(f, _)| *f == flag) {
                continue;
            }
            let from_variants = |wanted: &str| {
                let files =
                    loss.variants.iter().flat_map(|v| call_files(&dir, &format!("{op}-v"), &sample(v)));
                let path = files.into_iter().find(|(f, _)| *f == wanted).map(|(_, p)| p);
                path.unwrap_or_else(|| panic!("{op} reads {wanted}, but no variant of its entry has one"))
            };
            let mut extra: Vec<String> = if SWITCHES.contains(&flag) {
                vec![flag.into()]
            } else if let Some(v) = flag_value(flag, loss) {
                vec![flag.into(), v]
            } else if reads(loss) {
                // A file the op reads: from a variant whose call has it.
                vec![flag.into(), from_variants(flag)]
            } else {
                vec![flag.into(), base[0].1.clone()]
            };
            // jsd and tvd read --ignore-index of their --labels: with them.
            if flag == "--ignore-index" && loss.labels {
                extra.extend(["--labels".to_owned(), from_variants("--labels")]);
            }
            let (line, got) = load(&extra, false);
            if reads(loss) {
                assert!(got.is_ok(), "{line:?} should be accepted: {:?}", got.err());
                accepted += 1;
            } else {
                let msg = got.expect_err(&format!("{line:?} should be refused")).0;
                assert!(msg.contains(flag) && msg.contains(&op) && !msg.contains('\n'), "{line:?}: {msg}");
                refused += 1;
            }
        }
        // --grad-dtype is grad's.
        assert!(load(&["--grad-dtype".into(), "f32".into()], true).1.is_ok(), "{op} grad --grad-dtype");
        let msg = load(&["--grad-dtype".into(), "f32".into()], false).1.expect_err("eval --grad-dtype").0;
        assert!(msg.contains("--grad-dtype"), "{msg}");
    }
    eprintln!("flags: {accepted} op x flag pairs accepted, {refused} refused");
    // The table covers every flag of the parser: the rest are every op's.
    let everyone = ["--input", "--output", "--backend", "--adapter", "--grad-dtype"];
    for flag in wgpu_loss::cli::eval_flags() {
        assert!(
            everyone.contains(&flag.as_str()) || eval::OP_FLAGS.iter().any(|(f, _)| *f == flag),
            "{flag} is in neither OP_FLAGS nor the flags every op reads"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The command's contract where the red team found it broken: usage errors are one line with
/// status 2, an `--output` naming an input is refused before anything runs (through a link
/// too), a flag the op does not read is refused, PyTorch's checks on ctc's concatenated targets
/// and on multilabel-margin's ids after the first −1 are made.
#[test]
fn usage_errors_inputs_as_output_and_pytorchs_checks() {
    let dir = scratch("contract");
    let p = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    write(Path::new(&p("x.npy")), &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    write(Path::new(&p("t.npy")), &[0i64, 2], &[2]);
    let x = p("x.npy");
    let o = p("out.npy");
    // Usage errors: status 2, one line (no usage block), nothing written.
    for args in [
        vec!["eval", "mse", "--input", &x, "--target", &x, "--reduction", "avg", "--output", &o],
        vec!["eval", "no-such-op", "--input", &x, "--output", &o],
        vec!["eval", "triplet-margin", "--input", &x, "--p", "abc", "--output", &o],
        vec!["eval", "mse", "--input", &x, "--target", &x, "--output", ""],
        vec!["eval", "sigmoid-focal", "--input", &x, "--target", &x, "--gamma", "1e40", "--output", &o],
        vec!["eval", "mse", "--input", &x, "--no-such-flag", "--output", &o],
        vec!["eval", "mse", "--input", &x],
        vec![],
    ] {
        let out = cli(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: one line, got {stderr:?}");
        assert!(stderr.starts_with("wgpu-loss: error: "), "{args:?}: {stderr}");
        assert!(!Path::new(&o).exists(), "{args:?} wrote an output");
    }
    // --help and --version are not errors.
    for args in [vec!["--help"], vec!["eval", "--help"], vec!["--version"]] {
        assert_eq!(cli(&args).status.code(), Some(0), "{args:?}");
    }
    // Errors of the data or options: status 1.
    let refused = |args: &[&str], needle: &str| {
        let out = cli(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        fails(&dir, args, needle);
    };
    refused(
        &[
            "eval",
            "cross-entropy",
            "--input",
            &x,
            "--target",
            &p("t.npy"),
            "--temperature",
            "2",
            "--output",
            &o,
        ],
        "--temperature is only for jsd, not cross-entropy",
    );
    refused(&["eval", "log-softmax", "--input", &x, "--reduction", "sum", "--output", &o], "--reduction");
    refused(
        &["eval", "tvd", "--input", &x, "--target", &x, "--ignore-index", "2", "--output", &o],
        "--labels",
    );
    refused(
        &["eval", "mse", "--input", &x, "--target", &x, "--grad-dtype", "f32", "--output", &o],
        "--grad-dtype",
    );
    // --output naming an input, by its own name or through a link: refused, the input intact.
    let before = std::fs::read(&x).unwrap();
    refused(&["eval", "mse", "--input", &x, "--target", &x, "--output", &x], "is the --input file");
    std::os::unix::fs::symlink(&x, p("link.npy")).unwrap();
    refused(&["grad", "mse", "--input", &p("t.npy"), "--target", &x, "--output", &p("link.npy")], "--target");
    assert_eq!(std::fs::read(&x).unwrap(), before, "the input is untouched");
    std::fs::remove_file(p("link.npy")).unwrap();
    // ctc: concatenated targets must hold exactly the sum of the target lengths (PyTorch raises).
    write(Path::new(&p("lp.npy")), &[-1.0986123f32; 5 * 2 * 3], &[5, 2, 3]);
    write(Path::new(&p("ct.npy")), &[1i64, 2, 1, 2, 2], &[5]);
    write(Path::new(&p("il.npy")), &[5i64, 5], &[2]);
    write(Path::new(&p("tl.npy")), &[2i64, 2], &[2]);
    let lp = p("lp.npy");
    let (ct, il, tl) = (p("ct.npy"), p("il.npy"), p("tl.npy"));
    let ctc =
        ["eval", "ctc", "--input", &lp, "--target", &ct, "--input-lengths", &il, "--target-lengths", &tl];
    refused(&[&ctc[..], &["--output", &o]].concat(), "sum of the target lengths");
    // multilabel-margin: an id outside [−1, C) after the first −1 is still an error (PyTorch's).
    write(Path::new(&p("mt.npy")), &[2i64, -1, 7, 0, -1, -1], &[2, 3]);
    refused(
        &["eval", "multilabel-margin", "--input", &x, "--target", &p("mt.npy"), "--output", &o],
        "out of range",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
