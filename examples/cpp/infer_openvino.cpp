// Runs an OpenVINO engine (model.xml + model.bin, the openvino backend's engines: fp32, bf16,
// int8) with OpenVINO's C++ runtime, compiled for the CPU with the settings the engine was built
// and verified with.
#include <openvino/openvino.hpp>

#include <fstream>
#include <sstream>

#include "common.h"

namespace {

const std::string kUsage =
    std::string("usage: infer_openvino ENGINE INPUT.npy [--output LOGITS.npy] [--top-k K]\n"
                "\n"
                "Runs the OpenVINO engine ENGINE (its folder, or its model.xml) on the images in INPUT.npy\n") +
    example::kCpuRunnerUsage +
    "It needs the manifest.json that densenet-trt build writes beside the engine: the input is\n"
    "checked against its batch range and image size, and the model is compiled with its recorded\n"
    "settings (INFERENCE_PRECISION_HINT and the rest of backend_settings.config) and its thread\n"
    "count, as densenet_trt.load compiles it.\n";

// The CPU plugin's settings the engine records (backend_settings.config), and its thread count.
ov::AnyMap compile_config(const example::Manifest& manifest) {
    ov::AnyMap config;
    for (const char* key : {"INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "DYNAMIC_QUANTIZATION_GROUP_SIZE"}) {
        if (const auto value = manifest.value({"backend_settings", "config", key})) {
            config[key] = *value;
        }
    }
    if (!config.count("INFERENCE_PRECISION_HINT")) {
        throw std::runtime_error("the manifest's backend_settings.config does not pin INFERENCE_PRECISION_HINT; "
                                 "rebuild the engine");
    }
    if (const int64_t threads = manifest.optional_integer({"threads"})) {
        config[ov::inference_num_threads.name()] = static_cast<int32_t>(threads);
    }
    return config;
}

// An OpenVINO exception's message on one line: its last line that is not empty, after the lines
// saying where it was thrown ("Exception from src/...", "Check '...' failed at src/...").
std::string error_message(const std::exception& error) {
    std::istringstream lines(error.what());
    std::string line;
    std::string last;
    while (std::getline(lines, line)) {
        if (line.find_first_not_of(" \t\r") != std::string::npos) {
            last = line;
        }
    }
    return last;
}

// The IR's graph is XML: anything else is refused before OpenVINO, which would offer it to each of
// its frontends (TensorFlow's logs its parse errors on stderr), reads it.
void check_ir(const std::string& file) {
    std::ifstream in(file, std::ios::binary);
    std::string start(64, '\0');
    in.read(start.data(), static_cast<std::streamsize>(start.size()));
    start.resize(static_cast<size_t>(in.gcount()));
    if (start.rfind("<?xml", 0) != 0) {
        throw std::runtime_error("cannot load " + file + " as an OpenVINO IR: it is not XML (the model.xml that "
                                 "densenet-trt build writes)");
    }
}

void infer(const example::Options& options) {
    const auto [file, manifest] = example::engine_with_manifest(options.engine, "infer_openvino");
    npy::Array images = example::read_input(options.input, manifest);
    example::check_input(images.shape, manifest.input_range());

    const ov::AnyMap config = compile_config(manifest);
    ov::Core core;
    ov::CompiledModel compiled;
    check_ir(file);
    try {
        compiled = core.compile_model(file, "CPU", config);
    } catch (const std::exception& e) {
        throw std::runtime_error("cannot load " + file + " as an OpenVINO IR: " + error_message(e));
    }
    // The CPU plugin falls back to f32 where the CPU lacks the hinted precision: refuse instead.
    const std::string wanted = config.at("INFERENCE_PRECISION_HINT").as<std::string>();
    const std::string runs = compiled.get_property(ov::hint::inference_precision).get_type_name();
    if (runs != wanted) {
        throw std::runtime_error("this CPU runs the engine in " + runs + ", not the " + wanted +
                                 " it was built and verified in; rebuild it here");
    }
    ov::InferRequest request = compiled.create_infer_request();
    const ov::Shape shape(images.shape.begin(), images.shape.end());
    request.set_input_tensor(ov::Tensor(ov::element::f32, shape, images.data.data()));
    request.infer();
    const ov::Tensor output = request.get_output_tensor();
    if (output.get_element_type() != ov::element::f32 || output.get_shape().size() != 2) {
        throw std::runtime_error("the engine's output is " + output.get_element_type().get_type_name() + " " +
                                 output.get_shape().to_string() + ", not float32 (N, classes)");
    }
    const float* logits = output.data<const float>();
    const auto batch = static_cast<int64_t>(output.get_shape()[0]);
    const auto classes = static_cast<int64_t>(output.get_shape()[1]);
    example::report(options, batch, classes, std::vector<float>(logits, logits + batch * classes));
}

}  // namespace

int main(int argc, char** argv) {
    return example::run(argc, argv, kUsage, false, infer);
}
