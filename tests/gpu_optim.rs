//! Static and auto detection, split bindings, long rows and bad input, checked
//! against a float64 CPU model of the reference semantics (fixtures/golden/README.md)
//! that projects along any axis. Runs on whatever adapter exists.
use adamp_graph::plan::Projection;
use adamp_graph::runtime::{Algorithm, Detect, DeviceOptimizer, Gpu, Hyper, OptimError, Projected, TensorSpec};

fn gpu() -> Gpu {
    Gpu::open(None).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"))
}

/// Deterministic pseudo-random values in [-1, 1).
fn noise(seed: u64, n: usize) -> Vec<f32> {
    adamp_graph::runtime::bench::synthetic(seed, n)
}

/// Float64 model of one tensor under the reference semantics.
struct Cpu {
    algo: Algorithm,
    h: Hyper,
    shape: Vec<usize>,
    mode: Projection,
    p: Vec<f64>,
    s0: Vec<f64>,
    s1: Vec<f64>,
    step: i32,
}

impl Cpu {
    fn new(algo: Algorithm, h: &Hyper, shape: &[usize], mode: Projection, p: &[f32]) -> Cpu {
        let n = p.len();
        Cpu { algo, h: h.clone(), shape: shape.to_vec(), mode, p: p.iter().map(|&x| x as f64).collect(), s0: vec![0.0; n], s1: vec![0.0; n], step: 0 }
    }

    /// Row of element i when slicing along `axis`.
    fn row(&self, i: usize, axis: usize) -> usize {
        let inner: usize = self.shape[axis + 1..].iter().product();
        (i / inner) % self.shape[axis]
    }

    fn step(&mut self, g: &[f32]) -> Projected {
        self.step += 1;
        let (h, n) = (&self.h, self.p.len());
        let g: Vec<f64> = g.iter().map(|&x| x as f64).collect();
        let adam = self.algo.is_adam_family();
        let mut d = vec![0.0; n];
        let (bc1, bc2) = (1.0 - h.beta1.powi(self.step), 1.0 - h.beta2.powi(self.step));
        for i in 0..n {
            if adam {
                self.s0[i] = h.beta1 * self.s0[i] + (1.0 - h.beta1) * g[i];
                self.s1[i] = h.beta2 * self.s1[i] + (1.0 - h.beta2) * g[i] * g[i];
                let denom = self.s1[i].sqrt() / bc2.sqrt() + h.eps;
                let num = if h.nesterov { h.beta1 * self.s0[i] + (1.0 - h.beta1) * g[i] } else { self.s0[i] };
                d[i] = num / denom;
            } else {
                self.s0[i] = h.momentum * self.s0[i] + (1.0 - h.dampening) * g[i];
                d[i] = if h.nesterov { g[i] + h.momentum * self.s0[i] } else { self.s0[i] };
            }
        }
        let view = match &self.mode {
            Projection::Channel { axis } => Some((Projected::Channel, Some(*axis))),
            Projection::Layer => Some((Projected::Layer, None)),
            Projection::None => None,
            Projection::Runtime if self.shape.len() >= 2 => {
                let cos = |rows: usize, row_of: &dyn Fn(usize) -> usize| -> f64 {
                    let mut s = vec![[0.0f64; 3]; rows];
                    for i in 0..n {
                        let r = row_of(i);
                        s[r][0] += g[i] * self.p[i];
                        s[r][1] += g[i] * g[i];
                        s[r][2] += self.p[i] * self.p[i];
                    }
                    s.iter().map(|x| (x[0] / (x[1].sqrt().max(h.eps) * x[2].sqrt().max(h.eps))).abs()).fold(0.0, f64::max)
                };
                let rows = self.shape[0];
                if cos(rows, &|i| self.row(i, 0)) < h.delta / ((n / rows) as f64).sqrt() {
                    Some((Projected::Channel, Some(0)))
                } else if cos(1, &|_| 0) < h.delta / (n as f64).sqrt() {
                    Some((Projected::Layer, None))
                } else {
                    None
                }
            }
            Projection::Runtime => None,
        };
        let projected = view.is_some() && self.algo.projects();
        if let (true, Some((_, axis))) = (projected, view) {
            let rows = axis.map(|a| self.shape[a]).unwrap_or(1);
            let mut pp = vec![0.0; rows];
            let mut pd = vec![0.0; rows];
            for i in 0..n {
                let r = axis.map(|a| self.row(i, a)).unwrap_or(0);
                pp[r] += self.p[i] * self.p[i];
                pd[r] += self.p[i] * d[i];
            }
            for i in 0..n {
                let r = axis.map(|a| self.row(i, a)).unwrap_or(0);
                let norm = pp[r].sqrt() + h.eps;
                d[i] -= self.p[i] * pd[r] / (norm * norm);
            }
        }
        let wd = if projected { h.wd_ratio } else { 1.0 };
        for i in 0..n {
            if adam {
                self.p[i] *= 1.0 - h.lr * h.weight_decay * wd;
                self.p[i] -= h.lr / bc1 * d[i];
            } else {
                self.p[i] *= 1.0 - h.lr * h.weight_decay * wd / (1.0 - h.momentum);
                self.p[i] -= h.lr * d[i];
                if !h.nesterov {
                    self.s0[i] = d[i];
                }
            }
        }
        match (projected, view) {
            (true, Some((v, _))) => v,
            _ => Projected::None,
        }
    }
}

fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    let scale = want.iter().fold(0f64, |m, x| m.max(x.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (*g as f64 - w).abs();
        assert!(err <= 1e-4 * w.abs() + 1e-5 * scale, "{what}[{i}]: gpu {g} vs cpu {w}");
    }
}

/// Runs the same steps on the GPU and on the CPU model; returns the optimizer.
fn run<'g>(gpu: &'g Gpu, algo: Algorithm, detect: Detect, h: Hyper, specs: Vec<TensorSpec>, steps: usize, max_binding: Option<u64>) -> DeviceOptimizer<'g> {
    let params: Vec<Vec<f32>> = specs.iter().enumerate().map(|(t, s)| noise(t as u64 + 1, s.numel())).collect();
    let refs: Vec<&[f32]> = params.iter().map(Vec::as_slice).collect();
    let mut opt = DeviceOptimizer::new(gpu, algo, detect, h.clone(), specs.clone(), &refs, max_binding).unwrap();
    let mut cpus: Vec<Cpu> = specs
        .iter()
        .zip(&params)
        .map(|(s, p)| {
            let mode = match (detect, &s.projection) {
                (Detect::Runtime, _) => Projection::Runtime,
                (Detect::Static, Projection::Runtime) => Projection::None,
                (_, m) => m.clone(),
            };
            Cpu::new(algo, &h, &s.shape, mode, p)
        })
        .collect();
    for k in 0..steps {
        let grads: Vec<Vec<f32>> = specs.iter().enumerate().map(|(t, s)| noise(1000 * (k as u64 + 1) + t as u64, s.numel())).collect();
        let grefs: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
        opt.set_grads(&grefs).unwrap();
        opt.step().unwrap();
        let views = opt.projected().unwrap();
        for (t, cpu) in cpus.iter_mut().enumerate() {
            let want = cpu.step(&grads[t]);
            let name = &specs[t].name;
            if specs[t].numel() > 0 {
                assert_eq!(views[t], want, "{name} step {}: projected view", k + 1);
            }
            assert_close(&format!("{name} step {} param", k + 1), &opt.param(t).unwrap(), &cpu.p);
            assert_close(&format!("{name} step {} state0", k + 1), &opt.state(t).unwrap()[0], &cpu.s0);
        }
    }
    opt
}

fn spec(name: &str, shape: &[usize], projection: Projection) -> TensorSpec {
    TensorSpec { name: name.into(), shape: shape.to_vec(), projection }
}

fn adamp_hyper() -> Hyper {
    Hyper { weight_decay: 0.01, lr: 0.01, ..Hyper::defaults(Algorithm::Adamp) }
}

fn sgdp_hyper() -> Hyper {
    Hyper { momentum: 0.9, weight_decay: 1e-4, ..Hyper::defaults(Algorithm::Sgdp) }
}

#[test]
fn static_projection_along_axis_0_and_1() {
    let gpu = gpu();
    for (algo, h) in [(Algorithm::Adamp, adamp_hyper()), (Algorithm::Sgdp, sgdp_hyper())] {
        let specs = vec![
            spec("conv", &[6, 5, 3, 3], Projection::Channel { axis: 0 }),
            spec("convT", &[4, 7, 2, 2], Projection::Channel { axis: 1 }),
            spec("matmul", &[12, 9], Projection::Channel { axis: 1 }),
            spec("layer", &[10, 10], Projection::Layer),
            // rows of 641..5120 elements take a whole workgroup each
            spec("wide_rows", &[3, 2000], Projection::Channel { axis: 0 }),
            spec("wide_strided", &[2, 5, 700], Projection::Channel { axis: 1 }),
            spec("wide_layer", &[50, 60], Projection::Layer),
        ];
        run(&gpu, algo, Detect::Static, h, specs, 4, None);
    }
}

#[test]
fn auto_mode_mixes_static_runtime_and_unprojected_tensors() {
    let gpu = gpu();
    let specs = vec![
        spec("proven_channel", &[8, 4, 3, 3], Projection::Channel { axis: 0 }),
        spec("proven_layer", &[16, 8], Projection::Layer),
        spec("variant", &[5, 16], Projection::None),
        spec("undecided", &[6, 10], Projection::Runtime),
        spec("undecided_1d", &[7], Projection::Runtime),
    ];
    let opt = run(&gpu, Algorithm::Adamp, Detect::Auto, adamp_hyper(), specs.clone(), 4, None);
    assert_eq!(opt.modes(), vec!["channel", "layer", "none", "runtime", "none"]);
    // static ignores the undecided tensor; runtime tests every 2-D tensor
    let opt = run(&gpu, Algorithm::Sgdp, Detect::Static, sgdp_hyper(), specs.clone(), 3, None);
    assert_eq!(opt.modes(), vec!["channel", "layer", "none", "none", "none"]);
    let opt = run(&gpu, Algorithm::Sgdp, Detect::Runtime, sgdp_hyper(), specs, 3, None);
    assert_eq!(opt.modes(), vec!["runtime", "runtime", "runtime", "runtime", "none"]);
}

#[test]
fn tensors_split_across_bindings_and_long_rows() {
    let gpu = gpu();
    let specs = vec![
        spec("long_rows", &[3, 7000], Projection::Channel { axis: 0 }),
        spec("big_layer", &[40, 500], Projection::Layer),
        spec("strided_big", &[3, 10, 1000], Projection::Channel { axis: 1 }),
        spec("plain", &[9000], Projection::None),
        spec("small", &[4, 4], Projection::Channel { axis: 0 }),
        // runtime-tested with rows longer than a fused job: the split stats/decide/apply path
        spec("runtime_long", &[2, 6000], Projection::Runtime),
    ];
    // 32 KiB bindings: 8192 floats per page, so most tensors span pages.
    let opt = run(&gpu, Algorithm::Adamp, Detect::Static, adamp_hyper(), specs.clone(), 3, Some(32 * 1024));
    assert!(opt.pages() >= 8, "expected many pages, got {}", opt.pages());
    run(&gpu, Algorithm::Sgdp, Detect::Auto, sgdp_hyper(), specs, 2, Some(32 * 1024));
}

#[test]
fn baselines_match_the_cpu_model_without_projection() {
    let gpu = gpu();
    let specs = vec![spec("w", &[8, 4, 3, 3], Projection::Channel { axis: 0 }), spec("b", &[8], Projection::None)];
    // Adam with zero weight decay equals AdamP's unprojected path in the CPU model.
    let opt = run(&gpu, Algorithm::Adam, Detect::Auto, Hyper::defaults(Algorithm::Adam), specs, 3, None);
    assert_eq!(opt.modes(), vec!["none", "none"]);
}

#[test]
fn non_finite_gradients_are_reported_by_name_and_not_applied() {
    let gpu = gpu();
    let specs = vec![
        spec("fused", &[4, 8], Projection::Channel { axis: 0 }),
        spec("split", &[2, 6000], Projection::Channel { axis: 0 }),
        spec("fine", &[4, 8], Projection::Layer),
        spec("plain", &[10], Projection::None),
    ];
    let params: Vec<Vec<f32>> = specs.iter().enumerate().map(|(t, s)| noise(t as u64 + 7, s.numel())).collect();
    let refs: Vec<&[f32]> = params.iter().map(Vec::as_slice).collect();
    let mut opt = DeviceOptimizer::new(&gpu, Algorithm::Adamp, Detect::Static, adamp_hyper(), specs.clone(), &refs, None).unwrap();
    let mut g0 = noise(11, 32);
    g0[2 * 8 + 3] = f32::NAN; // row 2 of "fused"
    let mut g1 = noise(12, 12000);
    g1[7000] = f32::INFINITY;
    let g2 = noise(13, 32);
    let mut g3 = noise(14, 10);
    g3[4] = f32::NEG_INFINITY;
    opt.set_grads(&[&g0, &g1, &g2, &g3]).unwrap();
    match opt.step() {
        Err(OptimError::NonFinite(names)) => assert_eq!(names, vec!["fused".to_string(), "split".to_string(), "plain".to_string()]),
        other => panic!("expected a non-finite error, got {other:?}"),
    }
    let after: Vec<Vec<f32>> = (0..4).map(|t| opt.param(t).unwrap()).collect();
    assert_eq!(&after[0][16..24], &params[0][16..24], "the NaN row is untouched");
    assert_ne!(&after[0][0..8], &params[0][0..8], "finite rows of a fused tensor still step");
    assert_eq!(after[1], params[1], "a split tensor with Inf is untouched");
    assert!(opt.state(1).unwrap().iter().all(|s| s.iter().all(|x| *x == 0.0)), "state untouched");
    assert_ne!(after[2], params[2], "other tensors step");
    assert_eq!(after[3][4], params[3][4], "an unprojected element with a non-finite gradient is untouched");
    assert_ne!(after[3][3], params[3][3], "its finite neighbours step");
    assert!(after.iter().flatten().all(|x| x.is_finite()), "nothing non-finite propagated");

    // Under the runtime test a non-finite gradient leaves the whole tensor unchanged.
    let specs = vec![spec("tested", &[4, 8], Projection::Runtime), spec("other", &[4, 8], Projection::Runtime)];
    let params = [noise(21, 32), noise(22, 32)];
    let mut opt = DeviceOptimizer::new(&gpu, Algorithm::Sgdp, Detect::Runtime, sgdp_hyper(), specs, &[&params[0], &params[1]], None).unwrap();
    let mut g = noise(23, 32);
    g[9] = f32::NAN;
    opt.set_grads(&[&g, &noise(24, 32)]).unwrap();
    match opt.step() {
        Err(OptimError::NonFinite(names)) => assert_eq!(names, vec!["tested".to_string()]),
        other => panic!("expected a non-finite error, got {other:?}"),
    }
    assert_eq!(opt.param(0).unwrap(), params[0]);
    assert_ne!(opt.param(1).unwrap(), params[1]);
}

#[test]
fn zero_and_empty_tensors() {
    let gpu = gpu();
    let specs = vec![
        spec("zeros", &[4, 5], Projection::Channel { axis: 0 }),
        spec("empty", &[0, 5], Projection::Channel { axis: 0 }),
        spec("empty_layer", &[3, 0], Projection::Layer),
        spec("runtime_zeros", &[3, 3], Projection::Runtime),
    ];
    let zeros = [vec![0f32; 20], vec![], vec![], vec![0f32; 9]];
    let refs: Vec<&[f32]> = zeros.iter().map(Vec::as_slice).collect();
    for algo in [Algorithm::Adamp, Algorithm::Sgdp] {
        let h = if algo == Algorithm::Adamp { adamp_hyper() } else { sgdp_hyper() };
        let mut opt = DeviceOptimizer::new(&gpu, algo, Detect::Auto, h.clone(), specs.clone(), &refs, None).unwrap();
        opt.set_grads(&refs).unwrap();
        opt.step().unwrap();
        // eps keeps every norm finite: zero parameters with zero gradients stay zero,
        // and the runtime test passes (cosine 0) as in the reference.
        assert!(opt.param(0).unwrap().iter().all(|x| *x == 0.0));
        assert!(opt.param(1).unwrap().is_empty());
        assert_eq!(opt.projected().unwrap()[3], Projected::Channel);
        let mut cpu = Cpu::new(algo, &h, &[3, 3], Projection::Runtime, &[0.0; 9]);
        assert_eq!(cpu.step(&[0.0; 9]), Projected::Channel);
    }
}

#[test]
fn mismatched_inputs_are_errors() {
    let gpu = gpu();
    let specs = vec![spec("w", &[4, 4], Projection::Channel { axis: 0 })];
    let p = vec![0f32; 15];
    let e = DeviceOptimizer::new(&gpu, Algorithm::Adamp, Detect::Static, adamp_hyper(), specs.clone(), &[&p], None).err().unwrap();
    assert!(e.to_string().contains("'w'") && e.to_string().contains("15 values"), "{e}");
    let p = vec![0f32; 16];
    let mut opt = DeviceOptimizer::new(&gpu, Algorithm::Adamp, Detect::Static, adamp_hyper(), specs.clone(), &[&p], None).unwrap();
    let e = opt.set_grads(&[&p[..3]]).unwrap_err();
    assert!(e.to_string().contains("'w'"), "{e}");
    let bad_axis = vec![spec("w", &[4, 4], Projection::Channel { axis: 2 })];
    assert!(DeviceOptimizer::new(&gpu, Algorithm::Adamp, Detect::Static, adamp_hyper(), bad_axis, &[&p], None).is_err());
    let bad_hyper = Hyper { beta1: 1.5, ..adamp_hyper() };
    assert!(DeviceOptimizer::new(&gpu, Algorithm::Adamp, Detect::Static, bad_hyper, specs, &[&p], None).is_err());
}
