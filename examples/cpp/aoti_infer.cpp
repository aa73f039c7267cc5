// Run a model exported by `hpc-run export RUN_DIR` from C++: no Python at inference time.
//
//   aoti_infer MODEL.pt2 INPUT.tensor OUTPUT.tensor          run once, write the outputs
//   aoti_infer MODEL.pt2 INPUT.tensor --bench ITERATIONS     time ITERATIONS calls, print one JSON line
//   ... [--threads N]                                        intra-op threads (default: LibTorch's)
//
// The batch dimension is dynamic: INPUT may hold any number of rows. Tensor files are what
// hpc_runner.tensor_file writes: int64 item size (4: float32, 8: float64), int64 rank,
// int64 sizes[rank], then the values, all little-endian. In your own service you would build the
// input tensor from your request instead; the two lines that matter are the loader and run().
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

torch::Dtype dtype_of(int64_t item_size) {
  if (item_size == 4) return torch::kFloat32;
  if (item_size == 8) return torch::kFloat64;
  throw std::runtime_error("unsupported item size " + std::to_string(item_size) + " (4: float32, 8: float64)");
}

torch::Tensor read_tensor(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  int64_t item_size = 0, rank = 0;
  in.read(reinterpret_cast<char*>(&item_size), 8).read(reinterpret_cast<char*>(&rank), 8);
  std::vector<int64_t> sizes(rank);
  in.read(reinterpret_cast<char*>(sizes.data()), 8 * rank);
  torch::Tensor tensor = torch::empty(sizes, torch::TensorOptions().dtype(dtype_of(item_size)));
  in.read(static_cast<char*>(tensor.data_ptr()), tensor.nbytes());
  if (!in) throw std::runtime_error(path + " is shorter than its header says");
  return tensor;
}

void write_tensor(const torch::Tensor& value, const std::string& path) {
  torch::Tensor tensor = value.contiguous().cpu();
  std::ofstream out(path, std::ios::binary);
  int64_t item_size = tensor.element_size(), rank = tensor.dim();
  out.write(reinterpret_cast<const char*>(&item_size), 8).write(reinterpret_cast<const char*>(&rank), 8);
  out.write(reinterpret_cast<const char*>(tensor.sizes().data()), 8 * rank);
  out.write(static_cast<const char*>(tensor.data_ptr()), tensor.nbytes());
  if (!out) throw std::runtime_error("cannot write " + path);
}

// Seconds per call, after a few warm-up calls.
double seconds_per_call(torch::inductor::AOTIModelPackageLoader& model, const std::vector<torch::Tensor>& inputs,
                        int iterations) {
  for (int i = 0; i < 3; ++i) model.run(inputs);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iterations; ++i) model.run(inputs);
  std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  return elapsed.count() / iterations;
}

int usage(const std::string& problem) {
  std::cerr << "aoti_infer: " << problem << "\n"
            << "usage: aoti_infer MODEL.pt2 INPUT.tensor (OUTPUT.tensor | --bench ITERATIONS) [--threads N]\n";
  return 2;
}

// A positive integer, all digits (no sign, no suffix); nothing otherwise.
std::optional<int> positive(const std::string& text) {
  if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  int value = std::stoi(text);
  return value > 0 ? std::optional<int>(value) : std::nullopt;
}

struct Options {
  std::string model, input, output;  // output is empty when benchmarking
  int iterations = 0;                // calls to time (--bench); 0: run once and write the output
  int threads = 0;                   // intra-op threads (--threads); 0: LibTorch's default
};

// No Options: the command line's problem goes to `problem`.
std::optional<Options> fail(std::string& problem, const std::string& text) {
  problem = text;
  return std::nullopt;
}

// The command line as Options, or the usage problem in words.
std::optional<Options> parse(std::vector<std::string> args, std::string& problem) {
  Options options;
  if (!args.empty() && args.back() == "--threads") return fail(problem, "--threads needs a positive integer");
  if (args.size() >= 2 && args[args.size() - 2] == "--threads") {
    std::optional<int> threads = positive(args.back());
    if (!threads) return fail(problem, "--threads needs a positive integer, got '" + args.back() + "'");
    options.threads = *threads;
    args.resize(args.size() - 2);
  }
  if (args.size() < 3) return fail(problem, "expected MODEL.pt2 INPUT.tensor and an output or --bench");
  options.model = args[0];
  options.input = args[1];
  if (args[2] == "--bench") {
    if (args.size() != 4) return fail(problem, "--bench needs one ITERATIONS count");
    std::optional<int> iterations = positive(args[3]);
    if (!iterations) return fail(problem, "--bench needs a positive integer, got '" + args[3] + "'");
    options.iterations = *iterations;
  } else if (args.size() != 3 || args[2].rfind("--", 0) == 0) {
    return fail(problem, "unexpected argument '" + args.back() + "'");
  } else {
    options.output = args[2];
  }
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  std::string problem;
  std::optional<Options> options = parse(std::vector<std::string>(argv + 1, argv + argc), problem);
  if (!options) return usage(problem);
  try {
    if (options->threads > 0) torch::set_num_threads(options->threads);
    torch::NoGradGuard no_grad;
    if (!std::ifstream(options->model))
      throw std::runtime_error("cannot open " + options->model + " (write one: hpc-run export RUN_DIR)");
    torch::inductor::AOTIModelPackageLoader model(options->model);  // the package hpc-run export wrote
    std::vector<torch::Tensor> inputs{read_tensor(options->input)};
    if (options->iterations > 0) {
      double seconds = seconds_per_call(model, inputs, options->iterations);
      std::cout << "{\"batch\": " << inputs[0].size(0) << ", \"threads\": " << torch::get_num_threads()
                << ", \"seconds_per_call\": " << seconds << "}\n";
      return 0;
    }
    write_tensor(model.run(inputs).at(0), options->output);
    return 0;
  } catch (const std::exception& error) {  // LibTorch's messages end in a C++ stack: print the message alone
    std::string message = error.what();
    std::cerr << "aoti_infer: " << message.substr(0, message.find("\nException raised from")) << "\n";
    return 1;
  }
}
