//! `CnnBackend` for burn's autodiff backend: each op is recorded with a
//! backward step that calls the inner backend's gradient methods.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::{FloatTensor, IntTensor};

use super::CnnBackend;

impl<B: CnnBackend, C: CheckpointStrategy> CnnBackend for Autodiff<B, C> {
    fn conv3x3(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Conv3x3;

        impl<B: CnnBackend> Backward<B, 2> for Conv3x3 {
            type State = (NodeId, NodeId);

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let [node_x, node_weight] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x_state, weight_state) = ops.state;
                let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
                let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state);
                if let Some(node) = node_x {
                    grads.register::<B>(node.id, B::conv3x3_x_grad(x.clone(), weight.clone(), grad.clone()));
                }
                if let Some(node) = node_weight {
                    grads.register::<B>(node.id, B::conv3x3_weight_grad(x, weight, grad));
                }
            }
        }

        match Conv3x3.prepare::<C>([x.node.clone(), weight.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                prep.finish((x_state, weight_state), B::conv3x3(x.primitive, weight.primitive))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::conv3x3(x.primitive, weight.primitive)),
        }
    }

    fn batch_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, eps: f64) -> [FloatTensor<Self>; 3] {
        #[derive(Debug)]
        struct BatchNorm;

        impl<B: CnnBackend> Backward<B, 3> for BatchNorm {
            // x, gamma, the batch's mean and var, epsilon
            type State = (NodeId, NodeId, FloatTensor<B>, FloatTensor<B>, f64);

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let [node_x, node_gamma, node_beta] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x_state, gamma_state, mean, var, eps) = ops.state;
                let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
                let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(gamma_state);
                let [dx, dgamma, dbeta] = B::batch_norm_grad(x, gamma, mean, var, eps, grad);
                for (node, grad) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        let nodes = [x.node.clone(), gamma.node.clone(), beta.node.clone()];
        match BatchNorm.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let [out, mean, var] = B::batch_norm(x.primitive, gamma.primitive, beta.primitive, eps);
                let out = prep.finish((x_state, gamma_state, mean.clone(), var.clone(), eps), out);
                [out, Self::from_inner(mean), Self::from_inner(var)]
            }
            OpsKind::UnTracked(prep) => {
                let [out, mean, var] = B::batch_norm(x.primitive, gamma.primitive, beta.primitive, eps);
                [prep.finish(out), Self::from_inner(mean), Self::from_inner(var)]
            }
        }
    }

    fn max_pool2x2(x: FloatTensor<Self>) -> (FloatTensor<Self>, IntTensor<Self>) {
        #[derive(Debug)]
        struct MaxPool2x2;

        impl<B: CnnBackend> Backward<B, 1> for MaxPool2x2 {
            type State = (NodeId, IntTensor<B>);

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let [node_x] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x_state, indices) = ops.state;
                let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
                if let Some(node) = node_x {
                    grads.register::<B>(node.id, B::max_pool2x2_grad(x, grad, indices));
                }
            }
        }

        match MaxPool2x2.prepare::<C>([x.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let (out, indices) = B::max_pool2x2(x.primitive);
                (prep.finish((x_state, indices.clone()), out), indices)
            }
            OpsKind::UnTracked(prep) => {
                let (out, indices) = B::max_pool2x2(x.primitive);
                (prep.finish(out), indices)
            }
        }
    }
}
