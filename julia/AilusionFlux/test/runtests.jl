# The Flux model against the fixture the Python tests share (tests/fixtures/, written by
# tests/fixtures/make_fixtures.py): same input, same Flux-layout weights, same logits.
using AilusionFlux
using NPZ: npzread
using SafeTensors: SafeTensors
using Test

const FIXTURES = normpath(joinpath(@__DIR__, "..", "..", "..", "tests", "fixtures"))

fixture(name) = joinpath(FIXTURES, name)

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
end
