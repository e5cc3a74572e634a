"""Operator type names, to recognise the op type inside a node name (the daemon cannot import onnx).

ONNX Runtime's ETW per-node events name the node, not its type. Exporters name nodes after their
type ("/layer1/conv1/Conv", "Conv_12", "MatMul_3"), so an exact match of one of these names inside
the node name gives the type; no match gives "unknown", never a guess.
"""

from __future__ import annotations

import re


def _words(text: str) -> list[str]:
    return text.split()


# The ai.onnx domain (onnx 1.23 schemas; tests check each name exists in the installed onnx).
ONNX_OPS = frozenset(
    _words(
        """
    Abs Acos Acosh Add AffineGrid And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool
    BatchNormalization Bernoulli BitCast BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor
    BlackmanWindow Cast CastLike CausalConvWithState Ceil Celu CenterCropPad Clip Col2Im Compress
    Concat ConcatFromSequence Constant ConstantOfShape Conv ConvInteger ConvTranspose Cos Cosh
    CumProd CumSum DFT DeformConv DepthToSpace DequantizeLinear Det Div Dropout
    DynamicQuantizeLinear Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor GRU Gather
    GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater
    GreaterOrEqual GridSample GroupNormalization HammingWindow HannWindow HardSigmoid HardSwish
    Hardmax Identity If ImageDecoder InstanceNormalization IsInf IsNaN LRN LSTM LayerNormalization
    LeakyRelu Less LessOrEqual LinearAttention Log LogSoftmax Loop LpNormalization LpPool MatMul
    MatMulInteger Max MaxPool MaxRoiPool MaxUnpool Mean MeanVarianceNormalization MelWeightMatrix
    Min Mish Mod Mul Multinomial Neg NegativeLogLikelihoodLoss NonMaxSuppression NonZero Not OneHot
    Optional OptionalGetElement OptionalHasElement Or PRelu Pad Pow QLinearConv QLinearMatMul
    QuantizeLinear RMSNormalization RNN RandomNormal RandomNormalLike RandomUniform
    RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
    ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare RegexFullMatch Relu Reshape Resize
    ReverseSequence RoiAlign RotaryEmbedding Round STFT Scan Scatter ScatterElements ScatterND Selu
    SequenceAt SequenceConstruct SequenceEmpty SequenceErase SequenceInsert SequenceLength
    SequenceMap Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax SoftmaxCrossEntropyLoss
    Softplus Softsign SpaceToDepth Split SplitToSequence Sqrt Squeeze StringConcat StringNormalizer
    StringSplit Sub Sum SwiGLU Swish Tan Tanh TensorScatter TfIdfVectorizer ThresholdedRelu Tile
    TopK Transpose Trilu Unique Unsqueeze Upsample Where Xor
        """
    )
)

# ONNX Runtime's com.microsoft contrib and fused ops that show up in optimised graphs.
ORT_CONTRIB_OPS = frozenset(
    _words(
        """
    BiasGelu DynamicQuantizeMatMul EmbedLayerNormalization FastGelu FusedConv FusedGemm
    FusedMatMul GroupQueryAttention MatMulIntegerToFloat MatMulNBits MultiHeadAttention NchwcConv
    QAttention QGemm QLinearAdd QLinearAveragePool QLinearGlobalAveragePool QLinearLeakyRelu
    QLinearMul QLinearSigmoid QuickGelu ReorderInput ReorderOutput SimplifiedLayerNormalization
    SkipLayerNormalization SkipSimplifiedLayerNormalization
        """
    )
)

OP_TYPES = ONNX_OPS | ORT_CONTRIB_OPS

_SPLIT = re.compile(r"[/._:\-\s]+")
_TRAILING_DIGITS = re.compile(r"\d+$")


def op_type_of(node_name: str) -> str:
    """The op type named in a node name (the last token that is one), else "unknown"."""
    for token in reversed(_SPLIT.split(node_name)):
        for candidate in (token, _TRAILING_DIGITS.sub("", token)):
            if candidate in OP_TYPES:
                return candidate
    return "unknown"
