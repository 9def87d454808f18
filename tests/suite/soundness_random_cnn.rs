//! Randomized soundness check on convolutional graphs: random chains and
//! residual blocks of Conv (padding, bias, depthwise), BatchNormalization in
//! training mode, Relu/Sigmoid, pooling, and a global-pool + Gemm head,
//! evaluated in float64; every invariance the analysis claims must hold.
use crate::common;

use adamp_graph::onnx::{Attr, GraphBuilder, TensorData};
use common::random::{self, Rng, T};
use std::collections::HashMap;

fn conv(x: &T, w: &T, b: Option<&T>, pad: usize, groups: usize) -> T {
    let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (o, cg, k) = (w.shape[0], w.shape[1], w.shape[2]);
    let (oh, ow) = (h + 2 * pad - k + 1, wd + 2 * pad - k + 1);
    let og = o / groups;
    let mut out = vec![0.0; n * o * oh * ow];
    for b_ in 0..n {
        for oc in 0..o {
            let g = oc / og;
            for y in 0..oh {
                for x_ in 0..ow {
                    let mut s = b.map(|b| b.data[oc]).unwrap_or(0.0);
                    for ic in 0..cg {
                        let cin = g * cg + ic;
                        for ky in 0..k {
                            for kx in 0..k {
                                let (iy, ix) = (y + ky, x_ + kx);
                                if iy < pad || ix < pad || iy - pad >= h || ix - pad >= wd {
                                    continue;
                                }
                                s += w.data[((oc * cg + ic) * k + ky) * k + kx]
                                    * x.data[((b_ * c + cin) * h + iy - pad) * wd + ix - pad];
                            }
                        }
                    }
                    out[((b_ * o + oc) * oh + y) * ow + x_] = s;
                }
            }
        }
    }
    T {
        shape: vec![n, o, oh, ow],
        data: out,
    }
}

fn batch_norm(x: &T, g: &T, b: &T) -> T {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let m = (n * h * w) as f64;
    let mut out = x.data.clone();
    for ch in 0..c {
        let idx = |b_: usize, i: usize| (b_ * c + ch) * h * w + i;
        let mean: f64 = (0..n)
            .flat_map(|b_| (0..h * w).map(move |i| (b_, i)))
            .map(|(b_, i)| x.data[idx(b_, i)])
            .sum::<f64>()
            / m;
        let var: f64 = (0..n)
            .flat_map(|b_| (0..h * w).map(move |i| (b_, i)))
            .map(|(b_, i)| (x.data[idx(b_, i)] - mean).powi(2))
            .sum::<f64>()
            / m;
        let scale = mean.abs().max(var.sqrt()).max(1e-300);
        if var < 1e-20 * scale * scale {
            random::mark_degenerate();
        }
        for b_ in 0..n {
            for i in 0..h * w {
                let k = idx(b_, i);
                out[k] = (x.data[k] - mean) / (var + 1e-30).sqrt() * g.data[ch] + b.data[ch];
            }
        }
    }
    T {
        shape: x.shape.clone(),
        data: out,
    }
}

fn pool(x: &T, max: bool) -> T {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (oh, ow) = (h / 2, w / 2);
    let mut out = Vec::with_capacity(n * c * oh * ow);
    for b_ in 0..n {
        for ch in 0..c {
            for y in 0..oh {
                for x_ in 0..ow {
                    let v: Vec<f64> = [(0, 0), (0, 1), (1, 0), (1, 1)]
                        .iter()
                        .map(|(dy, dx)| x.data[((b_ * c + ch) * h + 2 * y + dy) * w + 2 * x_ + dx])
                        .collect();
                    out.push(if max {
                        v.iter().cloned().fold(f64::MIN, f64::max)
                    } else {
                        v.iter().sum::<f64>() / 4.0
                    });
                }
            }
        }
    }
    T {
        shape: vec![n, c, oh, ow],
        data: out,
    }
}

fn add(a: &T, b: &T) -> T {
    T {
        shape: a.shape.clone(),
        data: a.data.iter().zip(&b.data).map(|(x, y)| x + y).collect(),
    }
}

fn head(x: &T, w: &T, b: &T) -> T {
    // GlobalAveragePool + Flatten + Gemm(transB=1)
    let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let o = w.shape[0];
    let pooled: Vec<f64> = (0..n * c)
        .map(|k| x.data[k * h * wd..(k + 1) * h * wd].iter().sum::<f64>() / (h * wd) as f64)
        .collect();
    let data = (0..n)
        .flat_map(|b_| (0..o).map(move |j| (b_, j)))
        .map(|(b_, j)| {
            b.data[j]
                + (0..c)
                    .map(|i| pooled[b_ * c + i] * w.data[j * c + i])
                    .sum::<f64>()
        })
        .collect();
    T {
        shape: vec![n, o],
        data,
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// conv(input, weight, bias?, pad, groups)
    Conv(usize, String, Option<String>, usize, usize),
    Bn(usize, String, String),
    Relu(usize),
    Sigmoid(usize),
    Pool(usize, bool),
    Add(usize, usize),
}

struct Case {
    ops: Vec<Op>,
    params: HashMap<String, T>,
    x: T,
    head: (String, String),
}

fn channels(v: &[T], i: usize) -> usize {
    v[i].shape[1]
}

fn eval_op(op: &Op, v: &[T], p: &HashMap<String, T>) -> T {
    match op {
        Op::Conv(i, w, b, pad, groups) => {
            conv(&v[*i], &p[w], b.as_ref().map(|b| &p[b]), *pad, *groups)
        }
        Op::Bn(i, g, b) => batch_norm(&v[*i], &p[g], &p[b]),
        Op::Relu(i) => T {
            shape: v[*i].shape.clone(),
            data: v[*i].data.iter().map(|x| x.max(0.0)).collect(),
        },
        Op::Sigmoid(i) => T {
            shape: v[*i].shape.clone(),
            data: v[*i]
                .data
                .iter()
                .map(|x| 1.0 / (1.0 + (-x).exp()))
                .collect(),
        },
        Op::Pool(i, max) => pool(&v[*i], *max),
        Op::Add(i, j) => add(&v[*i], &v[*j]),
    }
}

fn random_case(seed: u64) -> Case {
    let mut rng = Rng::new(seed);
    let x = T {
        shape: vec![3, 3, 8, 8],
        data: (0..3 * 3 * 64).map(|_| rng.value()).collect(),
    };
    let mut vals = vec![x.clone()];
    let mut ops = Vec::new();
    let mut params: HashMap<String, T> = HashMap::new();
    let add_param = |rng: &mut Rng,
                     params: &mut HashMap<String, T>,
                     name: String,
                     shape: Vec<usize>|
     -> String {
        let len: usize = shape.iter().product();
        params.insert(
            name.clone(),
            T {
                shape,
                data: (0..len).map(|_| rng.value()).collect(),
            },
        );
        name
    };
    for s in 0..(3 + rng.below(5)) {
        let i = vals.len() - 1 - rng.below(vals.len().min(2));
        let c = channels(&vals, i);
        let side = vals[i].shape[2];
        let op = match rng.below(8) {
            0..=2 => {
                let depthwise = rng.below(4) == 0;
                let (o, groups) = if depthwise {
                    (c, c)
                } else {
                    (2 + rng.below(3), 1)
                };
                let k = if side >= 3 && rng.below(2) == 0 { 3 } else { 1 };
                let pad = if k == 3 { rng.below(2) } else { 0 };
                let w = add_param(
                    &mut rng,
                    &mut params,
                    format!("w{s}"),
                    vec![o, c / groups, k, k],
                );
                let b = (rng.below(2) == 0)
                    .then(|| add_param(&mut rng, &mut params, format!("cb{s}"), vec![o]));
                Op::Conv(i, w, b, pad, groups)
            }
            3 | 4 => Op::Bn(
                i,
                add_param(&mut rng, &mut params, format!("g{s}"), vec![c]),
                add_param(&mut rng, &mut params, format!("b{s}"), vec![c]),
            ),
            5 => {
                if rng.below(3) == 0 {
                    Op::Sigmoid(i)
                } else {
                    Op::Relu(i)
                }
            }
            6 if side >= 4 && side % 2 == 0 => Op::Pool(i, rng.below(2) == 0),
            _ => {
                let j = (0..vals.len())
                    .rev()
                    .find(|&j| j != i && vals[j].shape == vals[i].shape);
                match j {
                    Some(j) => Op::Add(i, j),
                    None => Op::Relu(i),
                }
            }
        };
        let out = eval_op(&op, &vals, &params);
        vals.push(out);
        ops.push(op);
    }
    let c = channels(&vals, vals.len() - 1);
    let hw = add_param(&mut rng, &mut params, "head.w".into(), vec![4, c]);
    let hb = add_param(&mut rng, &mut params, "head.b".into(), vec![4]);
    Case {
        ops,
        params,
        x,
        head: (hw, hb),
    }
}

fn eval(case: &Case, params: &HashMap<String, T>) -> T {
    let mut vals = vec![case.x.clone()];
    for op in &case.ops {
        let out = eval_op(op, &vals, params);
        vals.push(out);
    }
    head(
        vals.last().unwrap(),
        &params[&case.head.0],
        &params[&case.head.1],
    )
}

fn to_onnx(case: &Case) -> Vec<u8> {
    let mut b = GraphBuilder::new("cnn", 17);
    b.input("v0", &[-1, 3, 8, 8]);
    for (name, t) in &case.params {
        let dims: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
        b.initializer(
            name,
            &dims,
            TensorData::F32(t.data.iter().map(|&x| x as f32).collect()),
        );
    }
    for (s, op) in case.ops.iter().enumerate() {
        let v = |i: &usize| format!("v{i}");
        let out = format!("v{}", s + 1);
        match op {
            Op::Conv(i, w, bias, pad, groups) => {
                let p = *pad as i64;
                let mut ins = vec![v(i), w.clone()];
                if let Some(bias) = bias {
                    ins.push(bias.clone());
                }
                let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
                b.node(
                    "Conv",
                    &ins,
                    &[&out],
                    &[
                        ("pads", Attr::Ints(vec![p, p, p, p])),
                        ("group", Attr::Int(*groups as i64)),
                    ],
                );
            }
            Op::Bn(i, g, bb) => {
                let c = case.params[g].shape[0] as i64;
                let (m, var) = (format!("bn{s}.m"), format!("bn{s}.v"));
                b.initializer(&m, &[c], TensorData::Zeros);
                b.initializer(&var, &[c], TensorData::F32(vec![1.0; c as usize]));
                b.node(
                    "BatchNormalization",
                    &[&v(i), g, bb, &m, &var],
                    &[&out, &format!("bn{s}.rm"), &format!("bn{s}.rv")],
                    &[
                        ("training_mode", Attr::Int(1)),
                        ("epsilon", Attr::Float(1e-30)),
                    ],
                );
            }
            Op::Relu(i) => {
                b.node("Relu", &[&v(i)], &[&out], &[]);
            }
            Op::Sigmoid(i) => {
                b.node("Sigmoid", &[&v(i)], &[&out], &[]);
            }
            Op::Pool(i, max) => {
                let op = if *max { "MaxPool" } else { "AveragePool" };
                b.node(
                    op,
                    &[&v(i)],
                    &[&out],
                    &[
                        ("kernel_shape", Attr::Ints(vec![2, 2])),
                        ("strides", Attr::Ints(vec![2, 2])),
                    ],
                );
            }
            Op::Add(i, j) => {
                b.node("Add", &[&v(i), &v(j)], &[&out], &[]);
            }
        }
    }
    let last = format!("v{}", case.ops.len());
    b.node("GlobalAveragePool", &[&last], &["gp"], &[]);
    b.node("Flatten", &["gp"], &["flat"], &[]);
    b.node(
        "Gemm",
        &["flat", &case.head.0, &case.head.1],
        &["y"],
        &[("transB", Attr::Int(1))],
    );
    b.output("y");
    b.to_bytes()
}

#[test]
fn every_claim_holds_on_random_cnns() {
    let (mut graphs, mut claims) = (0, 0);
    for seed in 1..=150u64 {
        let case = random_case(seed);
        let analysis = adamp_graph::analyze_bytes(to_onnx(&case))
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        if let Some(n) = random::check_claims(
            seed,
            &analysis,
            &case.params,
            |p| eval(&case, p),
            || format!("ops: {:?}", case.ops),
        ) {
            graphs += 1;
            claims += n;
        }
    }
    assert!(
        graphs > 100 && claims > 150,
        "too weak: {graphs} graphs, {claims} claims"
    );
    eprintln!("{graphs} random CNNs, {claims} invariance claims verified numerically");
}
