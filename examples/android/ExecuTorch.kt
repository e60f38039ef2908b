import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor

val module = Module.load(assetFilePath(context, "model.pte"))
val x = Tensor.fromBlob(floatArrayOf(0.1f, -0.5f), longArrayOf(1, 2))
val outputs = module.forward(EValue.from(x))
val scores = outputs[0].toTensor().dataAsFloatArray
val decision = outputs[1].toTensor().dataAsLongArray
