//! The elementwise ops.
mod activation;
mod add;
mod bitwise;
mod clip;
mod compare;
mod div;
mod gelu;
mod math;
mod max_min;
mod mean;
mod mul;
mod neg_abs;
mod pow;
mod prelu;
mod string;
mod sub;
mod where_;

pub use activation::*;
pub use add::*;
pub use bitwise::*;
pub use clip::*;
pub use compare::*;
pub use div::*;
pub use gelu::*;
pub use math::*;
pub use max_min::*;
pub use mean::*;
pub use mul::*;
pub use neg_abs::*;
pub use pow::*;
pub use prelu::*;
pub use string::*;
pub use sub::*;
pub use where_::*;

use super::OpDef;

/// The ops of this family.
pub(crate) static OPS: &[&OpDef] = &[
    &RELU,
    &LEAKY_RELU,
    &SIGMOID,
    &HARD_SIGMOID,
    &HARD_SWISH,
    &TANH,
    &ELU,
    &SELU,
    &CELU,
    &SOFTPLUS,
    &SOFTSIGN,
    &MISH,
    &THRESHOLDED_RELU,
    &SHRINK,
    &SWISH,
    &P_RELU,
    &CLIP,
    &GELU,
    &EXP,
    &LOG,
    &SQRT,
    &RECIPROCAL,
    &ERF,
    &SIN,
    &COS,
    &TAN,
    &ASIN,
    &ACOS,
    &ATAN,
    &SINH,
    &COSH,
    &ASINH,
    &ACOSH,
    &ATANH,
    &FLOOR,
    &CEIL,
    &ROUND,
    &SIGN,
    &IS_NA_N,
    &IS_INF,
    &NOT,
    &BITWISE_NOT,
    &NEG,
    &ABS,
    &ADD,
    &SUM,
    &SUB,
    &MUL,
    &DIV,
    &POW,
    &MEAN,
    &MAX,
    &MIN,
    &WHERE,
    &EQUAL,
    &LESS,
    &GREATER,
    &LESS_OR_EQUAL,
    &GREATER_OR_EQUAL,
    &AND,
    &OR,
    &XOR,
    &MOD,
    &BIT_SHIFT,
    &BITWISE_AND,
    &BITWISE_OR,
    &BITWISE_XOR,
    &STRING_CONCAT,
    &REGEX_FULL_MATCH,
    &STRING_SPLIT,
];
