// Runs an AOTInductor package (model.pt2, the inductor backend's engines) with libtorch's
// AOTIModelPackageLoader.
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/cuda.h>

#include <memory>

#include "torch_helpers.h"

namespace {

const char* const kUsage =
    "usage: infer_aoti ENGINE.pt2 INPUT.npy [--output LOGITS.npy] [--top-k K]\n"
    "\n"
    "Runs the AOTInductor package ENGINE.pt2 on the float32 images (N, C, H, W) in INPUT.npy and\n"
    "prints the top K classes of each image (default 5) with their softmax probabilities.\n"
    "\n"
    "  --output LOGITS.npy  also write the logits (N, classes) as float32 .npy\n"
    "  --top-k K            how many classes to print per image\n"
    "\n"
    "The package runs on the device it was compiled for. It needs the manifest.json that\n"
    "densenet-trt build writes beside it: AOTInductor's code does not check the shape of its\n"
    "input, so the input is checked against the manifest's batch range and image size (and cast\n"
    "to the engine's precision) before it runs.\n";

void infer(const example::Options& options) {
    example::require_file(options.engine, "engine");
    const auto manifest = example::Manifest::beside(options.engine);
    if (!manifest) {
        throw std::runtime_error("no manifest.json beside " + options.engine +
                                 ": infer_aoti reads the input shape the package takes from it; keep the "
                                 "engine folder that densenet-trt build wrote together");
    }
    npy::Array images = example::read_images(options.input);
    example::check_input(images.shape, manifest->input_range());

    std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader;
    try {
        loader = std::make_unique<torch::inductor::AOTIModelPackageLoader>(options.engine);
    } catch (const std::exception& e) {
        throw std::runtime_error("cannot load " + options.engine + " as an AOTInductor package: " +
                                 example::error_message(e));
    }
    const std::string device = loader->get_metadata()["AOTI_DEVICE_KEY"];
    if (device == "cuda" && !torch::cuda::is_available()) {
        throw std::runtime_error("this package was compiled for cuda and no CUDA device is available here");
    }

    c10::InferenceMode inference;
    const torch::Tensor input = example::to_tensor(images, device, example::dtype_of(manifest->required({"precision"})));
    example::report(options, loader->run({input}).at(0));
}

}  // namespace

int main(int argc, char** argv) {
    return example::run(argc, argv, kUsage, false, infer);
}
