//! The `Einsum`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const EQUATION: OptStrAttr = OptStrAttr::required("equation", AttrCheck::Any);

/// The `Einsum` op.
pub static EINSUM: OpDef = OpDef {
    name: "Einsum",
    module: module_path!(),
    inputs: Arity::range(1, Arity::VARIADIC),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 12, until: None },
    attrs: &[
        EQUATION.spec,
    ],
    shape: Some(einsum_out_shape),
    analysis: Analysis::Unknown("not written: a general contraction is not tracked axis by axis"),
    gradient: Gradient::Rule(einsum_grad),
    ..OpDef::BASE
};

pub(crate) fn einsum_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // For y = einsum_grad(a, b -> o): da = einsum_grad(o, b -> a') where a' keeps the
    // letters of `a` that appear in `o` or `b`; letters only `a` sums over
    // are broadcast back.
    let dy = dy0!(n, dy);
    let eq: String = EQUATION.get(n).unwrap_or("").chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, out) = match eq.split_once("->") {
        Some((l, o)) => (l.to_string(), o.to_string()),
        None => {
            // Implicit output: the letters used once, in alphabetical order.
            let mut letters: Vec<char> = eq.chars().filter(|c| c.is_ascii_alphabetic()).collect();
            letters.sort_unstable();
            let once: String = letters.iter().filter(|&&c| eq.chars().filter(|&d| d == c).count() == 1).collect();
            (eq.clone(), once)
        }
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    let plain = |t: &str| t.chars().all(|c| c.is_ascii_alphabetic()) && t.chars().enumerate().all(|(i, c)| !t[..i].contains(c));
    if terms.len() != n.inputs.len() || terms.len() > 2 || !terms.iter().all(|t| plain(t)) || !plain(&out) {
        return Err(Ad::err(n, format!("the gradient supports one or two operands without ellipsis or repeated letters, not '{eq}'")));
    }
    let mut res = Vec::new();
    for (i, term) in terms.iter().enumerate() {
        if !nd(need, i) {
            continue;
        }
        let other = terms.get(1 - i).filter(|_| terms.len() == 2);
        let kept: String = term.chars().filter(|&c| out.contains(c) || other.is_some_and(|o| o.contains(c))).collect();
        let g = match other {
            Some(o) => {
                let b = ad.name(n, 1 - i);
                ad.em.op(&EINSUM, &[&dy, &b], vec![a_str("equation", &format!("{out},{o}->{kept}"))])
            }
            None => ad.em.op(&EINSUM, &[&dy], vec![a_str("equation", &format!("{out}->{kept}"))]),
        };
        let g = if kept.len() == term.len() {
            g
        } else {
            let missing: Vec<i64> = term.chars().enumerate().filter(|(_, c)| !kept.contains(*c)).map(|(k, _)| k as i64).collect();
            let u = ad.em.unsqueeze(&g, &missing);
            let x = ad.name(n, i);
            let s = ad.em.shape(&x);
            ad.em.op(&EXPAND, &[&u, &s], vec![])
        };
        res.push((i, g));
    }
    Ok(grads(n, res))
}

/// Output dims of an Einsum: each output letter takes the dim it labels in the
/// inputs; `...` stands for the broadcast of the inputs' unlabelled leading dims.
pub(crate) fn einsum_shape(g: &Graph, n: &Node) -> Option<Vec<Dim>> {
    let eq: String = EQUATION.get(n)?.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, out) = match eq.split_once("->") {
        Some((l, o)) => (l.to_string(), Some(o.to_string())),
        None => (eq.clone(), None),
    };
    let mut dims: std::collections::HashMap<char, Dim> = std::collections::HashMap::new();
    let mut ellipsis: Vec<Vec<Dim>> = Vec::new();
    for (i, term) in lhs.split(',').enumerate() {
        let shape = shape_of(g, n, i)?;
        let letters: Vec<char> = term.chars().filter(|c| c.is_ascii_alphabetic()).collect();
        let labelled: Vec<Dim> = if term.contains("...") {
            let (before, after) = term.split_once("...")?;
            let (nb, na) = (before.chars().count(), after.chars().count());
            if nb + na > shape.len() {
                return None;
            }
            ellipsis.push(shape[nb..shape.len() - na].to_vec());
            [&shape[..nb], &shape[shape.len() - na..]].concat()
        } else {
            shape
        };
        if labelled.len() != letters.len() {
            return None;
        }
        for (c, d) in letters.into_iter().zip(labelled) {
            let e = dims.entry(c).or_insert(d);
            if *e == Dim::Known(1) || matches!(*e, Dim::Unknown) {
                *e = d;
            }
        }
    }
    let batch = if ellipsis.is_empty() { Vec::new() } else { broadcast(&ellipsis)? };
    let out = out.unwrap_or_else(|| {
        let mut letters: Vec<char> = lhs.chars().filter(|c| c.is_ascii_alphabetic()).collect();
        letters.sort_unstable();
        let once: String = letters.iter().filter(|&&c| lhs.chars().filter(|&d| d == c).count() == 1).collect();
        if ellipsis.is_empty() { once } else { format!("...{once}") }
    });
    let mut result = Vec::new();
    let (before, after) = match out.split_once("...") {
        Some((b, a)) => (b.to_string(), Some(a.to_string())),
        None => (out.clone(), None),
    };
    for c in before.chars() {
        result.push(*dims.get(&c)?);
    }
    if let Some(after) = after {
        result.extend(batch);
        for c in after.chars() {
            result.push(*dims.get(&c)?);
        }
    }
    Some(result)
}

pub(crate) fn einsum_out_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    vec![(einsum_shape(g, n), None, None, first_dtype(g, n))]
}
