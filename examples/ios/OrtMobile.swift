import onnxruntime_objc

let env = try ORTEnv(loggingLevel: .warning)
let session = try ORTSession(env: env, modelPath: Bundle.main.path(forResource: "model", ofType: "ort")!,
                             sessionOptions: nil)
var x: [Float32] = [0.1, -0.5]
let input = try ORTValue(tensorData: NSMutableData(bytes: &x, length: 8), elementType: .float, shape: [1, 2])
let out = try session.run(withInputs: ["input": input], outputNames: ["output", "decision"], runOptions: nil)
