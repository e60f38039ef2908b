import org.tensorflow.lite.Interpreter

val interpreter = Interpreter(loadModelFile(context, "model.tflite"))  // a MappedByteBuffer from assets
val runner = interpreter.getSignatureRunner("serving_default")
val rows = 1
runner.resizeInput("input", intArrayOf(rows, 2))
runner.allocateTensors()
val input = arrayOf(floatArrayOf(0.1f, -0.5f))
val output = Array(rows) { FloatArray(2) }
val decision = IntArray(rows)  // int32 in model.tflite (int64 in model.ort and model.pte)
runner.run(mapOf("input" to input), mapOf("output" to output, "decision" to decision))
