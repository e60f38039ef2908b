import TensorFlowLite

let interpreter = try Interpreter(modelPath: Bundle.main.path(forResource: "model", ofType: "tflite")!)
let runner = try interpreter.signatureRunner(with: "serving_default")
try runner.resizeInput(named: "input", toShape: Tensor.Shape([1, 2]))
try runner.allocateTensors()
let x: [Float32] = [0.1, -0.5]
try runner.invoke(with: ["input": Data(bytes: x, count: x.count * 4)])
let scores = try runner.output(named: "output").data.withUnsafeBytes { Array($0.bindMemory(to: Float32.self)) }
let decision = try runner.output(named: "decision").data.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
