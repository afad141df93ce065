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

use super::{Activation, CnnBackend};

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

    fn quantize_weights(w: FloatTensor<Self>, bits: u32) -> [FloatTensor<Self>; 2] {
        #[derive(Debug)]
        struct QuantizeWeights;

        impl<B: CnnBackend> Backward<B, 1> for QuantizeWeights {
            // tanh of the weights
            type State = FloatTensor<B>;

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let [node_w] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                if let Some(node) = node_w {
                    grads.register::<B>(node.id, B::quantize_weights_grad(ops.state, grad));
                }
            }
        }

        let [q, tanh] = B::quantize_weights(w.primitive, bits);
        match QuantizeWeights.prepare::<C>([w.node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => [prep.finish(tanh.clone(), q), Self::from_inner(tanh)],
            OpsKind::UnTracked(prep) => [prep.finish(q), Self::from_inner(tanh)],
        }
    }

    fn norm_act(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
        act: Activation,
    ) -> [FloatTensor<Self>; 3] {
        #[derive(Debug)]
        struct NormAct;

        impl<B: CnnBackend> Backward<B, 3> for NormAct {
            // x, gamma, beta, the batch's mean and var, epsilon, the activation
            type State = (NodeId, NodeId, NodeId, FloatTensor<B>, FloatTensor<B>, f64, Activation);

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let [node_x, node_gamma, node_beta] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x_state, gamma_state, beta_state, mean, var, eps, act) = ops.state;
                let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
                let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(gamma_state);
                let beta = checkpointer.retrieve_node_output::<FloatTensor<B>>(beta_state);
                let [dx, dgamma, dbeta] = B::norm_act_grad(x, gamma, beta, mean, var, eps, act, grad);
                for (node, grad) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        let nodes = [x.node.clone(), gamma.node.clone(), beta.node.clone()];
        match NormAct.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let beta_state = prep.checkpoint(&beta);
                let [out, mean, var] = B::norm_act(x.primitive, gamma.primitive, beta.primitive, eps, act);
                let out = prep.finish((x_state, gamma_state, beta_state, mean.clone(), var.clone(), eps, act), out);
                [out, Self::from_inner(mean), Self::from_inner(var)]
            }
            OpsKind::UnTracked(prep) => {
                let [out, mean, var] = B::norm_act(x.primitive, gamma.primitive, beta.primitive, eps, act);
                [prep.finish(out), Self::from_inner(mean), Self::from_inner(var)]
            }
        }
    }

    fn norm_act_pool(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
        act: Activation,
    ) -> (FloatTensor<Self>, IntTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        #[derive(Debug)]
        struct NormActPool;

        impl<B: CnnBackend> Backward<B, 3> for NormActPool {
            // x, gamma, beta, the batch's mean and var, epsilon, the activation, where the maxima came from
            type State = (NodeId, NodeId, NodeId, FloatTensor<B>, FloatTensor<B>, f64, Activation, IntTensor<B>);

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let [node_x, node_gamma, node_beta] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x_state, gamma_state, beta_state, mean, var, eps, act, indices) = ops.state;
                let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
                let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(gamma_state);
                let beta = checkpointer.retrieve_node_output::<FloatTensor<B>>(beta_state);
                let [dx, dgamma, dbeta] = B::norm_act_pool_grad(x, gamma, beta, mean, var, eps, act, grad, indices);
                for (node, grad) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        let nodes = [x.node.clone(), gamma.node.clone(), beta.node.clone()];
        match NormActPool.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let beta_state = prep.checkpoint(&beta);
                let (out, indices, mean, var) = B::norm_act_pool(x.primitive, gamma.primitive, beta.primitive, eps, act);
                let state = (x_state, gamma_state, beta_state, mean.clone(), var.clone(), eps, act, indices.clone());
                (prep.finish(state, out), indices, Self::from_inner(mean), Self::from_inner(var))
            }
            OpsKind::UnTracked(prep) => {
                let (out, indices, mean, var) = B::norm_act_pool(x.primitive, gamma.primitive, beta.primitive, eps, act);
                (prep.finish(out), indices, Self::from_inner(mean), Self::from_inner(var))
            }
        }
    }
}
