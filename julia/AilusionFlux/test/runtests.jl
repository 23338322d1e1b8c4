# The Flux model against the fixtures the Python tests share (tests/fixtures/, written by
# tests/fixtures/make_fixtures.py and make_train_fixture.py): same input, same Flux-layout
# weights, same logits; the same weights after the same Adam steps.
using AilusionFlux
using NPZ: npzread
using SafeTensors: SafeTensors
using Test

const FIXTURES = normpath(joinpath(@__DIR__, "..", "..", "..", "tests", "fixtures"))

fixture(name) = joinpath(FIXTURES, name)

# Four Adam steps straight through, and two, `train_state`, `load_train_state!` into a fresh
# trainer (after a step whose state is overwritten) and two more: the weights must be the same.
# Returns both trainers and the saved state.
function resume_twice(make, x, labels; num_classes, options...)
    straight = train_setup(make(); options..., num_classes = num_classes)
    foreach(_ -> train_step!(straight, x, labels), 1:4)
    first = train_setup(make(); options..., num_classes = num_classes)
    foreach(_ -> train_step!(first, x, labels), 1:2)
    state = train_state(first)
    second = train_setup(make(); options..., num_classes = num_classes)
    train_step!(second, x, labels)  # state to be overwritten
    for name in keys(model_weights(second.model))
        load_train_state!(
            second, name, state["weights.$name"], state["adam.m.$name"],
            state["adam.v.$name"], state["adam.beta_t.$name"]
        )
    end
    foreach(_ -> train_step!(second, x, labels), 1:2)
    return straight, second, state
end

@testset "AilusionFlux" begin
    @testset "Conv is a true convolution (the kernel is flipped)" begin
        x = reshape(Float32[1, 2, 3, 4, 5, 6, 7, 8, 9], 3, 3, 1, 1)
        kernel = reshape(Float32[1, 0, 0, 0], 2, 2, 1, 1)  # only w[1, 1] is set
        model = build_model(kernel, Float32[0], ones(Float32, 1, 4), Float32[0]; activation = "identity")
        # A flipped kernel puts w[1, 1] on x[i + 1, j + 1]: 5 + 6 + 8 + 9.
        @test forward(model, x) == reshape(Float32[28], 1, 1)
    end

    @testset "a column-major batch is read in place" begin
        x = rand(Float32, 4, 4, 3, 5)
        @test AilusionFlux.as_dense(x) === x
        contiguous = view(x, :, :, :, 2:3)
        @test pointer(AilusionFlux.as_dense(contiguous)) == pointer(contiguous)
        permuted = PermutedDimsArray(x, (2, 1, 3, 4))
        @test AilusionFlux.as_dense(permuted) == permuted
    end

    @testset "matches the fixture's logits" begin
        isdir(FIXTURES) || error("fixtures not found at $FIXTURES")
        weights = SafeTensors.deserialize(fixture("flux_cnn_weights.safetensors"))
        settings = weights.metadata
        tensor(name) = collect(weights[name])
        pooling = settings["pooling"] == "none" ? nothing : settings["pooling"]
        model = build_model(
            tensor("conv.weight"), tensor("conv.bias"), tensor("dense.weight"), tensor("dense.bias");
            activation = settings["activation"], stride = parse(Int, settings["stride"]),
            pad = parse(Int, settings["pad"]), pooling = pooling,
            pool_size = parse(Int, settings["pool_size"])
        )
        nchw = npzread(fixture("flux_cnn_input.npy"))
        expected = npzread(fixture("flux_cnn_logits.npy"))  # (N, outputs)
        logits = forward(model, permutedims(nchw, (4, 3, 2, 1)))
        @test size(logits) == reverse(size(expected))
        @test logits ≈ permutedims(expected) atol = 1.0f-4 rtol = 1.0f-4
        @test device_name(model) == "CPUDevice"
    end

    @testset "a stack of conv blocks matches the deep fixture's logits" begin
        weights = SafeTensors.deserialize(fixture("flux_cnn_deep_weights.safetensors"))
        settings = weights.metadata
        tensor(name) = collect(weights[name])
        blocks = parse(Int, settings["conv_layers"])
        @test blocks == 2
        names = [AilusionFlux.conv_name(b) for b in 1:blocks]
        model = build_model(
            Tuple(tensor("$n.weight") for n in names), Tuple(tensor("$n.bias") for n in names),
            tensor("dense.weight"), tensor("dense.bias");
            activation = settings["activation"], stride = parse(Int, settings["stride"]),
            pad = parse(Int, settings["pad"]), pooling = settings["pooling"],
            pool_size = parse(Int, settings["pool_size"])
        )
        nchw = npzread(fixture("flux_cnn_input.npy"))
        expected = npzread(fixture("flux_cnn_deep_logits.npy"))
        @test forward(model, permutedims(nchw, (4, 3, 2, 1))) ≈ permutedims(expected) atol = 1.0f-4 rtol = 1.0f-4
        trained = model_weights(model)
        @test sort(collect(keys(trained))) ==
            sort(["conv.weight", "conv.bias", "conv2.weight", "conv2.bias", "dense.weight", "dense.bias"])
        @test trained["conv2.weight"] == tensor("conv2.weight")
    end

    @testset "a stack of conv blocks trains and resumes exactly" begin
        weights = SafeTensors.deserialize(fixture("flux_cnn_deep_weights.safetensors"))
        tensor(name) = collect(weights[name])
        make() = build_model(
            (tensor("conv.weight"), tensor("conv2.weight")), (tensor("conv.bias"), tensor("conv2.bias")),
            tensor("dense.weight"), tensor("dense.bias"); pad = 1, pooling = "max"
        )
        x, labels = rand(Float32, 16, 16, 3, 4), [0, 1, 2, 4]
        straight, second, state = resume_twice(
            make, x, labels; num_classes = 5, lr = 0.01, beta1 = 0.9, beta2 = 0.99, eps = 1.0e-7
        )
        @test haskey(state, "adam.m.conv2.weight")
        @test model_weights(second.model) == model_weights(straight.model)
        @test model_weights(straight.model)["conv2.weight"] != tensor("conv2.weight")
    end

    @testset "Adam steps match the twin's training-step fixture" begin
        fixture_file = fixture("flux_cnn_train_step.safetensors")
        arrays = SafeTensors.deserialize(fixture_file)
        settings = arrays.metadata
        tensor(name) = collect(arrays[name])
        pooling = settings["pooling"] == "none" ? nothing : settings["pooling"]
        model = build_model(
            tensor("before.conv.weight"), tensor("before.conv.bias"),
            tensor("before.dense.weight"), tensor("before.dense.bias");
            activation = settings["activation"], stride = parse(Int, settings["stride"]),
            pad = parse(Int, settings["pad"]), pooling = pooling,
            pool_size = parse(Int, settings["pool_size"])
        )
        labels = tensor("labels")
        num_classes = size(tensor("before.dense.bias"), 1)
        trainer = train_setup(
            model; lr = parse(Float64, settings["lr"]), beta1 = parse(Float64, settings["beta1"]),
            beta2 = parse(Float64, settings["beta2"]), eps = parse(Float64, settings["eps"]),
            num_classes = num_classes
        )
        x = permutedims(tensor("input"), (4, 3, 2, 1))  # NCHW to WHCN
        losses = Float64[]
        for _ in 1:parse(Int, settings["steps"])
            loss, logits = train_step!(trainer, x, labels)
            @test size(logits) == (num_classes, length(labels))
            push!(losses, loss)
        end
        @test losses[end] < losses[1]
        trained = model_weights(model)
        for name in ("conv.weight", "conv.bias", "dense.weight", "dense.bias")
            @test trained[name] ≈ tensor("after.$name") atol = 1.0f-5 rtol = 1.0f-4
        end
    end

    @testset "train_state and load_train_state! continue exactly" begin
        arrays = SafeTensors.deserialize(fixture("flux_cnn_train_step.safetensors"))
        tensor(name) = collect(arrays[name])
        make() = build_model(
            tensor("before.conv.weight"), tensor("before.conv.bias"),
            tensor("before.dense.weight"), tensor("before.dense.bias"); stride = 2, pad = 1,
            pooling = "max"
        )
        x, labels = permutedims(tensor("input"), (4, 3, 2, 1)), tensor("labels")
        straight, second, _ = resume_twice(
            make, x, labels; num_classes = 3, lr = 0.01, beta1 = 0.9, beta2 = 0.99,
            eps = 1.0e-7, weight_decay = 0.01
        )
        @test model_weights(second.model) == model_weights(straight.model)
    end
end
