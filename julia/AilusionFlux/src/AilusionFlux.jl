"""
    AilusionFlux

The ailusion model in Flux: `Chain(Conv, [pooling], …, flatten, Dense)` (one or more conv
blocks) built from weight arrays
given in Flux's own layout, run on WHCN `Float32` batches on the CPU or, when asked and CUDA is
functional, on the GPU, and trained with Optimisers.jl's `Adam` (`train_setup`, `train_step!`).

GPU support needs `CUDA` and `cuDNN` loaded beside Flux (`using CUDA, cuDNN`); this package does
not depend on them, so CPU users never download them.
"""
module AilusionFlux

using Flux: Flux, Adam, Chain, Conv, Dense, MaxPool, MeanPool, OptimiserChain, WeightDecay,
    cpu_device, gpu_device, logitcrossentropy, onehotbatch, relu, sigmoid
using MLUtils: MLUtils

export build_model, device_name, forward
export load_train_state!, model_weights, train_setup, train_state, train_step!

const ACTIVATIONS = Dict{String, Function}(
    "identity" => identity, "relu" => relu, "sigmoid" => sigmoid, "tanh" => tanh
)
const POOLINGS = Dict("max" => MaxPool, "mean" => MeanPool)

"""
    Model

A Flux chain and the device (from `cpu_device()` or `gpu_device()`) it lives on.
"""
struct Model{C, D}
    chain::C
    device::D
end

"""
    build_model(conv_weights, conv_biases, dense_weight, dense_bias; activation = "relu",
                stride = 1, pad = 0, pooling = nothing, pool_size = 2, gpu = false) -> Model

Build `Chain(Conv(conv_weights[1], conv_biases[1], activation; stride, pad), [pooling], …,
Conv(conv_weights[end], …), [pooling], flatten, Dense(dense_weight, dense_bias))`: one block per
kernel (a tuple or vector of them), each followed by the pooling. A kernel is `(kW, kH, Cin,
Cout)` and is used as a true convolution, as Flux's `Conv` does; `dense_weight` is `(outputs,
features)`. `pooling` is `nothing`, `"max"` or `"mean"`, over `(pool_size, pool_size)` windows
with the same stride. With `gpu = true` the model moves to `gpu_device()`, which is the CPU
unless a functional GPU backend is loaded.

    build_model(conv_weight, conv_bias, dense_weight, dense_bias; …)

The single block: the same as `build_model((conv_weight,), (conv_bias,), …)`.
"""
function build_model(
        conv_weights::Union{Tuple, AbstractVector}, conv_biases::Union{Tuple, AbstractVector},
        dense_weight::AbstractMatrix{<:Real}, dense_bias::AbstractVector{<:Real};
        activation::AbstractString = "relu", stride::Integer = 1, pad::Integer = 0,
        pooling::Union{Nothing, AbstractString} = nothing, pool_size::Integer = 2,
        gpu::Bool = false
    )
    haskey(ACTIVATIONS, activation) || throw(ArgumentError("unknown activation $activation"))
    pooling === nothing || haskey(POOLINGS, pooling) ||
        throw(ArgumentError("unknown pooling $pooling"))
    length(conv_weights) == length(conv_biases) >= 1 ||
        throw(ArgumentError("give one bias per kernel, and at least one kernel"))
    layers = Any[]
    for (weight, bias) in zip(conv_weights, conv_biases)
        push!(
            layers, Conv(
                Array{Float32}(weight), Vector{Float32}(bias), ACTIVATIONS[activation];
                stride = Int(stride), pad = Int(pad)
            )
        )
        pooling === nothing || push!(layers, POOLINGS[pooling]((Int(pool_size), Int(pool_size))))
    end
    dense = Dense(Matrix{Float32}(dense_weight), Vector{Float32}(dense_bias))
    chain = Chain(layers..., MLUtils.flatten, dense)
    device = gpu ? gpu_device() : cpu_device()
    return Model(device(chain), device)
end

function build_model(
        conv_weight::AbstractArray{<:Real, 4}, conv_bias::AbstractVector{<:Real},
        dense_weight::AbstractMatrix{<:Real}, dense_bias::AbstractVector{<:Real}; options...
    )
    return build_model((conv_weight,), (conv_bias,), dense_weight, dense_bias; options...)
end

"""
    device_name(model::Model) -> String

The name of the device type the model runs on, e.g. `"CPUDevice"` or `"CUDADevice"`.
"""
device_name(model::Model) = string(nameof(typeof(model.device)))

"""
    forward(model::Model, x::AbstractArray{Float32, 4}) -> Matrix{Float32}

Logits `(outputs, N)` on the CPU for a `(W, H, C, N)` batch. A column-major `x` that is not an
`Array` (a `PyArray` over a NumPy batch) is read in place, without a copy.
"""
function forward(model::Model, x::AbstractArray{Float32, 4})
    return GC.@preserve x begin
        logits = model.chain(model.device(as_dense(x)))
        cpu_device()(logits)
    end
end

"""
    as_dense(x::AbstractArray) -> Array

`x` itself if it is an `Array`; an `Array` over the same memory if `x` is laid out column-major
(NumPy's `(N, C, H, W)` C-order batch transposed to WHCN is); otherwise a copy. The caller must
keep `x` alive while the result is in use.
"""
as_dense(x::Array) = x
function as_dense(x::AbstractArray{T}) where {T}
    if applicable(strides, x) && strides(x) == column_major_strides(size(x))
        # fatou-ignore discouraged-function: the zero-copy hand-over is the point; forward preserves x
        return unsafe_wrap(Array, pointer(x), size(x))
    end
    return Array{T}(x)
end

column_major_strides(dims::Tuple) = Tuple(cumprod([1; collect(dims[1:(end - 1)])]))

include("training.jl")

end # module AilusionFlux
