"""The benchmark's peer: KServe's Python model server serving a .tflite with LiteRT.

Runs in its own venv (bench/.venv-kserve, from requirements.txt beside this file), never imported
by optimodel. Written the way KServe's custom-model docs write one: a `kserve.Model` that loads in
`load()` and answers `predict()` with v2 tensors; int8 inputs are quantized and outputs
dequantized like optimodel does, so both return the same floats. The interpreter settings
(`--threads`) match optimodel's; KServe's `--workers` gives it as many processes (one interpreter
each) as optimodel has interpreters.
"""

from __future__ import annotations

import argparse
from typing import Any

import kserve
import numpy as np
from ai_edge_litert.interpreter import Interpreter
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer


class TFLiteModel(Model):
    """Loads its interpreter in the worker process on first use: KServe pickles the model to spawn
    its `--workers`, and a LiteRT interpreter cannot be pickled."""

    def __init__(self, name: str, path: str, threads: int) -> None:
        super().__init__(name)
        self.path, self.threads = path, threads
        self.interpreter: Interpreter | None = None
        self.ready = True

    def load(self) -> bool:
        self.interpreter = Interpreter(model_path=self.path, num_threads=self.threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.batch = 1
        return True

    def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None, **_: Any
    ) -> InferResponse:
        if self.interpreter is None:
            self.load()
        assert self.interpreter is not None
        x = payload.inputs[0].as_numpy().astype(np.float32)
        if x.shape[0] != self.batch:
            self.interpreter.resize_tensor_input(self.input["index"], list(x.shape))
            self.interpreter.allocate_tensors()
            self.batch = x.shape[0]
        scale, zero = self.input["quantization"]
        if self.input["dtype"] == np.int8:
            x = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"])
        if self.output["dtype"] == np.int8:
            o_scale, o_zero = self.output["quantization"]
            y = (y.astype(np.float32) - o_zero) * o_scale
        output = InferOutput(name="output_0", shape=list(y.shape), datatype="FP32")
        output.set_data_from_numpy(y.astype(np.float32), binary_data=False)
        return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=[output])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--threads", type=int, default=1)
    args, _ = parser.parse_known_args()
    ModelServer().start([TFLiteModel(args.model_name, args.model_path, args.threads)])
