//! The nn ops.
mod attention;
mod batch_norm;
mod conv;
mod conv_transpose;
mod det;
mod dropout;
mod einsum;
mod gemm;
mod group_norm;
mod image;
mod instance_norm;
mod layer_norm;
mod loss;
mod lp_norm;
mod lrn;
mod matmul;
mod mean_variance_norm;
mod pool;
mod quantize;
mod recurrent;
mod rms_norm;
mod softmax;
mod image_decoder;
mod flex_attention;
mod causal_conv_with_state;
mod linear_attention;
mod swiglu;
pub(crate) mod tiled;
pub(crate) mod window_kernel;

pub use attention::*;
pub use batch_norm::*;
pub use conv::*;
pub use conv_transpose::*;
pub use det::*;
pub use dropout::*;
pub use einsum::*;
pub use gemm::*;
pub use group_norm::*;
pub use image::*;
pub use instance_norm::*;
pub use layer_norm::*;
pub use loss::*;
pub use lp_norm::*;
pub use lrn::*;
pub use matmul::*;
pub use mean_variance_norm::*;
pub use pool::*;
pub use quantize::*;
pub use recurrent::*;
pub use rms_norm::*;
pub use softmax::*;
pub use image_decoder::*;
pub use flex_attention::*;
pub use causal_conv_with_state::*;
pub use linear_attention::*;
pub use swiglu::*;

use super::OpDef;

/// The ops of this family.
pub(crate) static OPS: &[&OpDef] = &[
    &CONV,
    &CONV_INTEGER,
    &DEFORM_CONV,
    &Q_LINEAR_CONV,
    &CONV_TRANSPOSE,
    &GEMM,
    &MAT_MUL,
    &MAT_MUL_INTEGER,
    &Q_LINEAR_MAT_MUL,
    &EINSUM,
    &DET,
    &BATCH_NORMALIZATION,
    &INSTANCE_NORMALIZATION,
    &LAYER_NORMALIZATION,
    &GROUP_NORMALIZATION,
    &RMS_NORMALIZATION,
    &LP_NORMALIZATION,
    &MEAN_VARIANCE_NORMALIZATION,
    &LRN,
    &MAX_POOL,
    &AVERAGE_POOL,
    &LP_POOL,
    &GLOBAL_AVERAGE_POOL,
    &GLOBAL_MAX_POOL,
    &GLOBAL_LP_POOL,
    &MAX_UNPOOL,
    &SOFTMAX,
    &SWIGLU,
    &LINEAR_ATTENTION,
    &CAUSAL_CONV_WITH_STATE,
    &FLEX_ATTENTION,
    &IMAGE_DECODER,
    &LOG_SOFTMAX,
    &HARDMAX,
    &DROPOUT,
    &RNN,
    &GRU,
    &LSTM,
    &ATTENTION,
    &ROTARY_EMBEDDING,
    &NEGATIVE_LOG_LIKELIHOOD_LOSS,
    &SOFTMAX_CROSS_ENTROPY_LOSS,
    &QUANTIZE_LINEAR,
    &DEQUANTIZE_LINEAR,
    &DYNAMIC_QUANTIZE_LINEAR,
    &GRID_SAMPLE,
    &AFFINE_GRID,
    &ROI_ALIGN,
    &COL2IM,
    &NON_MAX_SUPPRESSION,
];
