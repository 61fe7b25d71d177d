// Runs a TorchScript engine (model.ts) with libtorch: the torchscript backend's engines, and
// TensorRT engines saved as TorchScript when Torch-TensorRT's runtime library is linked.
#include <torch/cuda.h>
#include <torch/script.h>

#include "torch_helpers.h"

namespace {

const char* const kUsage =
    "usage: infer_torchscript ENGINE.ts INPUT.npy [--output LOGITS.npy] [--top-k K] [--device cpu|cuda]\n"
    "\n"
    "Runs the TorchScript engine ENGINE.ts on the float32 images (N, C, H, W) in INPUT.npy and prints\n"
    "the top K classes of each image (default 5) with their softmax probabilities.\n"
    "\n"
    "  --output LOGITS.npy  also write the logits (N, classes) as float32 .npy\n"
    "  --top-k K            how many classes to print per image\n"
    "  --device cpu|cuda    where to run (default: the device in the manifest.json beside\n"
    "                       ENGINE.ts, else cpu); TensorRT engines run on cuda\n"
    "\n"
    "With the manifest that densenet-trt build writes beside the engine, the input's shape is\n"
    "checked against the engine's batch range and image size, and the input is cast to the\n"
    "engine's precision.\n";

void infer(const example::Options& options) {
    example::require_file(options.engine, "engine");
    const auto manifest = example::Manifest::beside(options.engine);
    npy::Array images = example::read_images(options.input);
    if (manifest) {
        example::check_input(images.shape, manifest->input_range());
    }
    const std::string device =
        !options.device.empty() ? options.device : manifest ? manifest->required({"device", "type"}) : "cpu";
    if (device == "cuda" && !torch::cuda::is_available()) {
        throw std::runtime_error("cannot run on cuda: no CUDA device is available here");
    }
    const torch::Dtype dtype = example::dtype_of(manifest ? manifest->required({"precision"}) : "fp32");

    torch::jit::Module module;
    try {
        module = torch::jit::load(options.engine, torch::Device(device));
    } catch (const std::exception& e) {
        throw std::runtime_error("cannot load " + options.engine + " as TorchScript: " + example::error_message(e));
    }
    module.eval();
    // What the torchscript backend does when Python loads the engine (fp32 on the CPU).
    if (manifest && manifest->value({"backend_settings", "optimize_for_inference_at_load"}) == "true") {
        module = torch::jit::optimize_for_inference(module);
    }

    c10::InferenceMode inference;
    const torch::Tensor input = example::to_tensor(images, device, dtype);
    torch::Tensor logits;
    try {
        logits = module.forward({input}).toTensor();
    } catch (const std::exception& e) {
        throw std::runtime_error("the engine cannot run input of shape " + npy::shape_text(images.shape) + ": " +
                                 example::error_message(e));
    }
    example::report(options, logits);
}

}  // namespace

int main(int argc, char** argv) {
    return example::run(argc, argv, kUsage, true, infer);
}
