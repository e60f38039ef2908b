import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment

val env = OrtEnvironment.getEnvironment()
val session = env.createSession(assetBytes("model.ort"))
OnnxTensor.createTensor(env, arrayOf(floatArrayOf(0.1f, -0.5f))).use { x ->
    session.run(mapOf("input" to x)).use { result ->
        val scores = result.get("output").get().value as Array<FloatArray>
        val decision = result.get("decision").get().value as LongArray
    }
}
