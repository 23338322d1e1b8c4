# Training: Optimisers.jl's Adam on Flux.logitcrossentropy, one batch at a time. Python decides
# the batches and their order (ailusion.training) and hands each to `train_step!`.

"""
    Trainer

A model, its optimiser state from `Flux.setup`, the number of classes, and whether the rule is
`OptimiserChain(WeightDecay(λ), Adam(η, β, ϵ))` (`decay`) or `Adam(η, β, ϵ)` alone.
"""
struct Trainer{M <: Model, S}
    model::M
    state::S
    num_classes::Int
    decay::Bool
end

"""
    train_setup(model::Model; lr, beta1, beta2, eps, weight_decay = 0, num_classes) -> Trainer

`Flux.setup(Adam(lr, (beta1, beta2), eps), model)`; with a non-zero `weight_decay`, the rule is
`OptimiserChain(WeightDecay(weight_decay), Adam(…))`: L2 added to the gradient, as torch's
`Adam(weight_decay = …)` does.
"""
function train_setup(
        model::Model; lr::Real, beta1::Real, beta2::Real, eps::Real, weight_decay::Real = 0,
        num_classes::Integer
    )
    adam = Adam(Float64(lr), (Float64(beta1), Float64(beta2)), Float64(eps))
    decay = !iszero(weight_decay)
    rule = decay ? OptimiserChain(WeightDecay(Float64(weight_decay)), adam) : adam
    return Trainer(model, Flux.setup(rule, model.chain), Int(num_classes), decay)
end

"""
    train_step!(trainer::Trainer, x::AbstractArray{Float32, 4}, labels::AbstractVector) -> (loss, logits)

One Adam step on a `(W, H, C, N)` batch with 0-based class ids `labels`. Returns the batch's
mean `logitcrossentropy` and its `(classes, N)` logits on the CPU, both from the forward pass
the gradient is taken from (before the update).
"""
function train_step!(trainer::Trainer, x::AbstractArray{Float32, 4}, labels::AbstractVector)
    return GC.@preserve x labels begin
        device = trainer.model.device
        input = device(as_dense(x))
        target = device(onehotbatch(Int.(collect(labels)), 0:(trainer.num_classes - 1)))
        out = Flux.withgradient(trainer.model.chain) do chain
            logits = chain(input)
            logitcrossentropy(logits, target), logits
        end
        Flux.update!(trainer.state, trainer.model.chain, out.grad[1])
        loss, logits = out.val
        (Float64(loss), cpu_device()(logits))
    end
end

"""
    model_weights(model::Model) -> Dict{String, Array{Float32}}

The current weights in Flux's layout, on the CPU, by the names ailusion saves them under.
"""
function model_weights(model::Model)
    return Dict{String, Array{Float32}}(
        name => Array{Float32}(cpu_device()(array)) for (name, array) in parameters(model.chain)
    )
end

"""
    conv_name(block) -> String

The name ailusion saves conv block `block`'s tensors under: `conv` for the first, then `conv2`, ….
"""
conv_name(block::Integer) = block == 1 ? "conv" : "conv$block"

# The positions of the chain's Conv layers, in order.
conv_positions(chain::Chain) = [i for (i, layer) in enumerate(chain.layers) if layer isa Conv]

# `name => (weight, bias)` picks, for each conv block and the dense layer, from `layers` (the
# chain's layers, or their optimiser states, which Flux.setup lays out the same way).
function named(chain::Chain, layers)
    pairs = Pair{String, Any}[]
    for (block, i) in enumerate(conv_positions(chain))
        push!(pairs, "$(conv_name(block)).weight" => layers[i].weight)
        push!(pairs, "$(conv_name(block)).bias" => layers[i].bias)
    end
    push!(pairs, "dense.weight" => layers[end].weight, "dense.bias" => layers[end].bias)
    return pairs
end

parameters(chain::Chain) = named(chain, chain.layers)

leaves(trainer::Trainer) = named(trainer.model.chain, trainer.state.layers)

adam_state(trainer::Trainer, leaf) = trainer.decay ? leaf.state[2] : leaf.state

"""
    train_state(trainer::Trainer) -> Dict{String, Array{Float32}}

Weights (`weights.NAME`), Adam's moments (`adam.m.NAME`, `adam.v.NAME`) and the running powers
of β (`adam.beta_t.NAME`), enough for `load_train_state!` to continue exactly.
"""
function train_state(trainer::Trainer)
    state = Dict{String, Array{Float32}}()
    for (name, array) in model_weights(trainer.model)
        state["weights.$name"] = array
    end
    for (name, leaf) in leaves(trainer)
        mt, vt, βt = adam_state(trainer, leaf)
        state["adam.m.$name"] = Array{Float32}(cpu_device()(mt))
        state["adam.v.$name"] = Array{Float32}(cpu_device()(vt))
        state["adam.beta_t.$name"] = Float32[βt[1], βt[2]]
    end
    return state
end

"""
    load_train_state!(trainer::Trainer, name, weight, m, v, beta_t) -> trainer

Put back one tensor's weights and Adam state, as `train_state` gave them.
"""
function load_train_state!(
        trainer::Trainer, name::AbstractString, weight::AbstractArray, m::AbstractArray,
        v::AbstractArray, beta_t::AbstractVector
    )
    params = Dict(parameters(trainer.model.chain))
    leaf = Dict(leaves(trainer))[name]
    copyto!(params[name], trainer.model.device(Array{Float32}(weight)))
    mt, vt, βt = adam_state(trainer, leaf)
    copyto!(mt, trainer.model.device(Array{Float32}(m)))
    copyto!(vt, trainer.model.device(Array{Float32}(v)))
    restored = (mt, vt, oftype(βt, (beta_t[1], beta_t[2])))
    leaf.state = trainer.decay ? (leaf.state[1], restored) : restored
    return trainer
end
