// What the two libtorch programs share: the engine's dtype, the input tensor and the report.
#pragma once

#include <torch/types.h>

#include "common.h"

namespace example {

// The dtype an engine of `precision` (fp32, fp16, bf16; from its manifest) takes.
inline torch::Dtype dtype_of(const std::string& precision) {
    if (precision == "fp16") {
        return torch::kHalf;
    }
    if (precision == "bf16") {
        return torch::kBFloat16;
    }
    return torch::kFloat32;
}

// A libtorch error on one line: for an error inside TorchScript code, its last line (the error
// itself, after the traceback); otherwise its first (the message, before any backtrace).
inline std::string error_message(const std::exception& error) {
    const auto* c10_error = dynamic_cast<const c10::Error*>(&error);
    const std::string text = c10_error ? c10_error->what_without_backtrace() : error.what();
    const size_t end = text.find_last_not_of("\n ");
    if (text.rfind("The following operation failed in the TorchScript interpreter.", 0) == 0 &&
        end != std::string::npos) {
        const size_t newline = text.rfind('\n', end);
        return text.substr(newline + 1, end - newline);
    }
    return first_line(text);
}

inline torch::Tensor to_tensor(npy::Array& images, const std::string& device, torch::Dtype dtype) {
    return torch::from_blob(images.data.data(), images.shape, torch::kFloat32).to(device, dtype);
}

inline void report(const Options& options, const torch::Tensor& output) {
    const torch::Tensor logits = output.to(torch::kCPU, torch::kFloat32).contiguous();
    const float* begin = logits.data_ptr<float>();
    report(options, logits.size(0), logits.size(1), std::vector<float>(begin, begin + logits.numel()));
}

}  // namespace example
